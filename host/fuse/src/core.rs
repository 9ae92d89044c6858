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

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use avm_core::address::{basename, is_within, join, parent};
use avm_core::time::Nanos;
use avm_core::{
    Action, Caller, Content, Error, ErrorKind, Host, ListOptions, NodeKind, Put, RemoveOptions,
    Rename, Result, SetAttrs, Stat, WriteInput,
};

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
    pub reader: Option<u32>,
}

/// Programs that copy, archive, compare or checksum files: what they read must be the file's
/// bytes exactly, so they never get urgent messages in front.
const COPIERS: &[&str] = &[
    "cp",
    "mv",
    "install",
    "rsync",
    "scp",
    "sftp-server",
    "rclone",
    "tar",
    "bsdtar",
    "cpio",
    "pax",
    "zip",
    "7z",
    "7za",
    "gzip",
    "bzip2",
    "xz",
    "zstd",
    "dd",
    "git",
    "hg",
    "svn",
    "sqlite3",
    "diff",
    "cmp",
    "md5sum",
    "sha1sum",
    "sha224sum",
    "sha256sum",
    "sha384sum",
    "sha512sum",
    "b2sum",
    "cksum",
    "sum",
    "shasum",
    "base64",
    "od",
    "xxd",
    "hexdump",
    "file",
    "restic",
    "borg",
    "duplicity",
    "unison",
];

/// Is the process `pid` one of [`COPIERS`] (by `/proc/<pid>/comm`)?
fn is_copier(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|c| COPIERS.contains(&c.trim()))
        .unwrap_or(false)
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

/// May urgent messages be shown in front of the file at `path`? Only text memory files
/// (`.md`, `.markdown`, `.txt`) under `/memory`: a banner in front of JSON, YAML, TOML, CSV or
/// any other format would break it for the program reading it.
pub fn urgent_fits(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or("");
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    (path == "/memory" || path.starts_with("/memory/"))
        && ["md", "markdown", "txt"].contains(&ext.as_str())
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

/// Nanoseconds since the epoch as a time.
pub fn from_nanos(ns: Nanos) -> SystemTime {
    if ns >= 0 {
        UNIX_EPOCH + Duration::from_nanos(ns as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(ns.unsigned_abs())
    }
}

/// A time as nanoseconds since the epoch.
pub fn to_nanos(t: SystemTime) -> Nanos {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => Nanos::try_from(d.as_nanos()).unwrap_or(Nanos::MAX),
        Err(e) => -Nanos::try_from(e.duration().as_nanos()).unwrap_or(Nanos::MAX),
    }
}

fn micros(us: Option<i64>) -> Option<SystemTime> {
    us.map(|t| from_nanos(t.saturating_mul(1000)))
}

/// The help text served as `:help` everywhere.
pub fn help(agent: Option<&str>) -> String {
    format!(
        "AVM — AI Virtual Memory  (agent: {})\n\n\
         Files:        cat/echo/ls/mv/rm/mkdir as usual; /private/… is your private namespace\n\
         Per file:     :meta :tags :links :history :shared :ttl :delta :mark :data :path :info :topics\n\
         Writable:     :meta (JSON merge) :tags (a,b) :links (TARGET [TYPE] lines) :ttl (2h|never) :shared (all|a,b) :mark\n\
         Directories:  :list?limit=&offset=&q=&tag=  :changes?since=&minutes=&limit=  :stats  :topics  :help\n\
         Queries:      :search?q=&limit=  :recall?q=&max_tokens=&strategy=  :inbox (?mark=read)\n\
         Shortcuts:    @id (from :list / :changes) stands for its file, e.g. cat @1f:meta\n\
         Messages:     echo text > tell/AGENT?priority=urgent|normal|low ; tell/@all broadcasts\n",
        agent.unwrap_or("operator")
    )
}

/// The inode number `readdir` shows for a name the kernel has not looked up: stable for the
/// path, far above allocated numbers (the kernel asks `lookup` before it uses one).
fn listed_ino(path: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in path.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h | (1 << 63)
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

    /// How many inodes are remembered (the root included).
    pub fn inode_count(&self) -> usize {
        lock(&self.inodes).by_ino.len()
    }

    /// The path of an inode the kernel knows.
    pub fn path_of(&self, ino: u64) -> Result<String> {
        lock(&self.inodes)
            .by_ino
            .get(&ino)
            .map(|i| i.path.clone())
            .ok_or_else(|| Error::new(ErrorKind::NotFound, format!("inode {ino} is unknown")))
    }

    /// The path of `name` inside the directory `parent_ino`.
    pub fn child(&self, parent_ino: u64, name: &str) -> Result<String> {
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(Error::invalid(format!("bad name {name:?}")));
        }
        Ok(join(&self.path_of(parent_ino)?, name))
    }

    /// The inode of `path`, counting one more lookup by the kernel (allocated on first use).
    fn remember(&self, path: &str) -> u64 {
        let mut i = lock(&self.inodes);
        if let Some(n) = i.by_path.get(path).copied() {
            if let Some(e) = i.by_ino.get_mut(&n) {
                e.lookups += 1;
            }
            return n;
        }
        let n = i.next;
        i.next += 1;
        i.by_ino.insert(
            n,
            Inode {
                path: path.to_string(),
                lookups: 1,
                unlinked: false,
                gone: None,
            },
        );
        i.by_path.insert(path.to_string(), n);
        n
    }

    /// The kernel dropped `n` lookups of `ino`; the inode goes when none are left and no
    /// file is open on it.
    pub fn forget(&self, ino: u64, n: u64) {
        if ino == ROOT {
            return;
        }
        let mut i = lock(&self.inodes);
        let gone = match i.by_ino.get_mut(&ino) {
            Some(e) => {
                e.lookups = e.lookups.saturating_sub(n);
                e.lookups == 0 && !lock(&self.files).contains_key(&ino)
            }
            None => false,
        };
        if gone {
            Self::drop_inode(&mut i, ino);
        }
    }

    fn drop_inode(i: &mut Inodes, ino: u64) {
        if let Some(e) = i.by_ino.remove(&ino)
            && i.by_path.get(&e.path) == Some(&ino)
        {
            i.by_path.remove(&e.path);
        }
    }

    /// Drops an inode whose last open file closed, if the kernel has forgotten it too.
    fn maybe_drop(&self, ino: u64) {
        let mut i = lock(&self.inodes);
        let gone = i
            .by_ino
            .get(&ino)
            .is_some_and(|e| e.lookups == 0 && !lock(&self.files).contains_key(&ino));
        if gone {
            Self::drop_inode(&mut i, ino);
        }
    }

    /// Translates a mount path into a host address: `@id` shortcuts become their node's path.
    fn address(&self, path: &str) -> Result<String> {
        if is_within(path, "/tell") {
            return Ok(path.to_string());
        }
        let Some(i) = path.find("/@") else {
            return Ok(path.to_string());
        };
        let rest = &path[i + 2..];
        let (id, tail) = match rest.find([':', '/', '?']) {
            Some(k) => (&rest[..k], &rest[k..]),
            None => (rest, ""),
        };
        if avm_core::storage::shortcut_id(id).is_none() {
            return Err(Error::not_found(path));
        }
        let node = match self
            .host
            .read(&self.caller, &format!("{}:handle?id={id}", self.own_root()))
        {
            Ok(out) => out.data()["path"]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| Error::not_found(path))?,
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::NotFound
                        | ErrorKind::PermissionDenied
                        | ErrorKind::Unsupported
                        | ErrorKind::InvalidInput
                ) =>
            {
                return Err(Error::not_found(path));
            }
            Err(e) => return Err(e),
        };
        Ok(format!("{node}{tail}"))
    }

    fn is_help(path: &str) -> bool {
        path.ends_with(":help")
    }

    /// Is `path` generated content rather than a stored node?
    fn is_virtual(&self, path: &str) -> Result<bool> {
        if Self::is_help(path) || (is_within(path, "/tell") && path != "/tell") {
            return Ok(true);
        }
        if !path.contains([':', '?']) {
            // No suffix and no query can come from a path without either (a shortcut's
            // tail is the path's own).
            return Ok(false);
        }
        let addr = self.host.parse(&self.caller, &self.address(path)?)?;
        Ok(addr.suffix.is_some() || !addr.query.is_empty())
    }

    /// The caller's own root, which it may always read: services are addressed there.
    fn own_root(&self) -> String {
        self.caller.private_root().unwrap_or_else(|| "/".into())
    }

    /// The block of the caller's unread urgent messages and their ids (looked up at most
    /// every 250 ms), for the top of the next file it reads.
    fn urgent(&self) -> Option<(String, Vec<i64>)> {
        self.caller.agent()?;
        let mut u = lock(&self.urgent);
        if u.0.is_none_or(|t| t.elapsed() > Duration::from_millis(250)) {
            u.1 = self
                .host
                .read(
                    &self.caller,
                    &format!("{}:inbox?only=urgent", self.own_root()),
                )
                .ok()
                .filter(|out| !out.text.is_empty())
                .map(|out| {
                    let ids = out.data()["ids"]
                        .as_array()
                        .map(|a| a.iter().filter_map(|v| v.as_i64()).collect())
                        .unwrap_or_default();
                    (out.text, ids)
                });
            u.0 = Some(Instant::now());
        }
        u.1.clone()
    }

    fn forget_urgent(&self) {
        lock(&self.urgent).0 = None;
    }

    /// The open file of `ino`, if any.
    fn file(&self, ino: u64) -> Option<Arc<FileState>> {
        lock(&self.files).get(&ino).cloned()
    }

    /// Attributes of what the host stores at `path` (no open-file overlay).
    fn stored_attr(&self, path: &str, ino: u64) -> Result<Attr> {
        let name = basename(path);
        if name.starts_with("._") || name == ".DS_Store" {
            return Err(Error::not_found(path));
        }
        if self.is_virtual(path)? {
            // Open, it has the size of what was generated for it: a reader that sizes its
            // buffer by `fstat` (Rust's `fs::read`, Python's `read()`) reads it in one go
            // rather than growing its buffer a read (and a round trip here) at a time.
            if let Some(size) = self.generated_size(ino) {
                return Ok(Attr {
                    size,
                    ..Attr::generated(ino)
                });
            }
            if path.starts_with("/tell/") {
                self.host.stat(&self.caller, path)?;
            } else if !Self::is_help(path) {
                // The node a suffix hangs on must exist and be visible (content is generated
                // only when read, so stat never triggers a query or moves a marker).
                let addr = self.host.parse(&self.caller, &self.address(path)?)?;
                self.host.stat(&self.caller, &addr.path)?;
            }
            return Ok(Attr::generated(ino));
        }
        let st = self.host.stat(&self.caller, &self.address(path)?)?;
        Ok(self.attr_of(ino, &st))
    }

    /// The size of the content generated for an open handle on `ino` (the largest, when
    /// several are open), if any.
    fn generated_size(&self, ino: u64) -> Option<u64> {
        if ino == 0 {
            return None;
        }
        lock(&self.handles)
            .values()
            .filter_map(|h| match h {
                HandleKind::Snapshot { ino: i, data, .. } if *i == ino => Some(data.len() as u64),
                _ => None,
            })
            .max()
    }

    fn attr_of(&self, ino: u64, st: &Stat) -> Attr {
        let fallback = st
            .updated_at
            .and_then(|t| micros(Some(t)))
            .unwrap_or(self.started);
        let mtime = st.attrs.mtime.map(from_nanos).unwrap_or(fallback);
        let ctime = st.attrs.ctime.map(from_nanos).unwrap_or(mtime);
        let read = micros(st.accessed_at);
        let set = st.attrs.atime.map(from_nanos);
        let atime = match (read, set) {
            (Some(a), Some(b)) => a.max(b),
            (a, b) => a.or(b).unwrap_or(mtime),
        };
        let (kind, perm, nlink) = match st.kind {
            NodeKind::Dir => (Kind::Dir, 0o755, st.attrs.nlink.unwrap_or(2)),
            NodeKind::File => (Kind::File, 0o644, 1),
            NodeKind::Symlink => (Kind::Symlink, 0o777, 1),
        };
        let perm = st.attrs.mode.map(|m| (m & 0o7777) as u16).unwrap_or(perm);
        // The size is the content's: urgent messages shown in front of a file at a read (an
        // open with direct I/O, read to its end) are not part of it, so `stat`, `ls -l` and
        // rsync's quick check see the same size with or without messages pending.
        let size = st.size;
        Attr {
            ino,
            kind,
            size,
            mtime,
            ctime,
            atime,
            perm: if kind == Kind::Symlink { 0o777 } else { perm },
            uid: st.attrs.uid,
            gid: st.attrs.gid,
            nlink,
        }
    }

    /// Attributes of an open file: its buffer's size and mtime over what the host stores.
    fn open_attr(&self, ino: u64, f: &FileState) -> Option<Attr> {
        let d = lock(&f.data);
        let base = match d.stat {
            Some(a) => a,
            None if d.new => Attr::made(ino, 0, d.mtime, d.mode, d.owner),
            None => return None,
        };
        if !(d.new || d.dirty || d.unlinked) {
            return None;
        }
        Some(Attr {
            ino,
            size: d.bytes.len() as u64,
            mtime: d.mtime,
            nlink: if d.unlinked { 0 } else { 1 },
            ..base
        })
    }

    /// Attributes of a known inode.
    pub fn getattr(&self, ino: u64) -> Result<Attr> {
        if let Some(f) = self.file(ino)
            && let Some(a) = self.open_attr(ino, &f)
        {
            return Ok(a);
        }
        let (path, unlinked) = {
            let i = lock(&self.inodes);
            let e = i.by_ino.get(&ino).ok_or_else(|| {
                Error::new(ErrorKind::NotFound, format!("inode {ino} is unknown"))
            })?;
            (e.path.clone(), e.unlinked)
        };
        if unlinked {
            return lock(&self.inodes)
                .by_ino
                .get(&ino)
                .and_then(|e| e.gone)
                .ok_or_else(|| Error::not_found(&path));
        }
        self.stored_attr(&path, ino)
    }

    /// Looks `name` up in `parent`: its attributes, and one more kernel reference to it.
    pub fn lookup(&self, parent_ino: u64, name: &str) -> Result<Attr> {
        let path = self.child(parent_ino, name)?;
        // A file being created here is not stored yet, but it exists.
        let known = lock(&self.inodes).by_path.get(&path).copied();
        if let Some(ino) = known
            && let Some(f) = self.file(ino)
            && let Some(a) = self.open_attr(ino, &f)
            && !lock(&f.data).unlinked
        {
            self.remember(&path);
            return Ok(a);
        }
        let a = self.stored_attr(&path, 0)?;
        let ino = self.remember(&path);
        Ok(Attr { ino, ..a })
    }

    /// Attributes of `path` as seen through the mount (tests and tools; allocates no inode).
    pub fn stat_path(&self, path: &str) -> Result<Attr> {
        let known = lock(&self.inodes).by_path.get(path).copied();
        match known {
            Some(ino) => self.getattr(ino),
            None => self.stored_attr(path, 0),
        }
    }

    /// Directory entries of `ino`: `(name, kind, inode)`, complete, in name order.
    pub fn readdir(&self, ino: u64) -> Result<Vec<(String, Kind, u64)>> {
        let path = self.path_of(ino)?;
        let listing = self.host.list(
            &self.caller,
            &self.address(&path)?,
            &ListOptions {
                recursive: false,
                limit: None,
                offset: 0,
            },
        )?;
        let mut out: Vec<(String, Kind)> = listing
            .entries
            .into_iter()
            .map(|e| {
                (
                    basename(&e.path).to_string(),
                    match e.kind {
                        NodeKind::Dir => Kind::Dir,
                        NodeKind::File => Kind::File,
                        NodeKind::Symlink => Kind::Symlink,
                    },
                )
            })
            .collect();
        let pending: Vec<String> = lock(&self.files)
            .values()
            .filter_map(|f| {
                let d = lock(&f.data);
                (d.new && !d.unlinked && parent(&d.path) == path).then(|| d.path.clone())
            })
            .collect();
        for p in pending {
            let name = basename(&p).to_string();
            if !out.iter().any(|(n, _)| *n == name) {
                out.push((name, Kind::File));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        let i = lock(&self.inodes);
        Ok(out
            .into_iter()
            .map(|(name, kind)| {
                let child = join(&path, &name);
                let n = i
                    .by_path
                    .get(&child)
                    .copied()
                    .unwrap_or_else(|| listed_ino(&child));
                (name, kind, n)
            })
            .collect())
    }

    /// Takes a listing of `ino` for a directory handle.
    pub fn opendir(&self, ino: u64) -> Result<u64> {
        let entries = self.readdir(ino)?;
        let fh = self.new_fh();
        lock(&self.dirs).insert(fh, Arc::new(entries));
        Ok(fh)
    }

    /// The listing of a directory handle (taken at open; `None` for an unknown handle).
    pub fn dir_listing(&self, fh: u64) -> Option<DirListing> {
        lock(&self.dirs).get(&fh).cloned()
    }

    /// Drops a directory handle.
    pub fn releasedir(&self, fh: u64) {
        lock(&self.dirs).remove(&fh);
    }

    fn new_fh(&self) -> u64 {
        self.next_fh.fetch_add(1, Ordering::Relaxed)
    }

    fn check_write(&self, path: &str) -> Result<()> {
        let addr = self.host.parse(&self.caller, &self.address(path)?)?;
        self.host
            .policy()
            .check(&self.caller, &addr.path, Action::Write)?;
        if addr.suffix.is_none() {
            self.host.check_writable(&addr.path)?;
        }
        Ok(())
    }

    fn generate(&self, path: &str) -> Result<Vec<u8>> {
        if Self::is_help(path) {
            return Ok(help(self.caller.agent()).into_bytes());
        }
        Ok(self
            .host
            .read(&self.caller, &self.address(path)?)?
            .bytes()
            .to_vec())
    }

    /// The stored content of `path`, exactly.
    fn load(&self, path: &str) -> Result<Vec<u8>> {
        Ok(self
            .host
            .read(&self.caller, &self.address(path)?)?
            .into_bytes())
    }

    /// Opens the file `ino`; returns the handle and whether reads must bypass the page cache.
    pub fn open(&self, ino: u64, mode: OpenMode) -> Result<(u64, bool)> {
        let path = self.path_of(ino)?;
        let fh = self.new_fh();
        if self.is_virtual(&path)? {
            let h = if mode.write {
                self.check_write(&path)?;
                HandleKind::Virtual {
                    path,
                    buf: Vec::new(),
                    written: false,
                }
            } else {
                HandleKind::Snapshot {
                    ino,
                    data: Arc::new(self.generate(&path)?),
                    shown: Vec::new(),
                    header_len: 0,
                }
            };
            lock(&self.handles).insert(fh, h);
            return Ok((fh, true));
        }
        if mode.write {
            self.check_write(&path)?;
        }
        let memory = self.host.provider_kind(&path).is_none_or(|k| k == "memory");
        let open = self.file(ino);
        if !mode.write && open.is_none() {
            // Content generated on each read (http, script, sqlite, wasm, …) may differ from
            // the size getattr saw, so the kernel must not trust that size: direct I/O. A
            // file shown with urgent messages in front is a snapshot too.
            // The reference's contract: the agent sees urgent messages at its next read of a
            // file — kept only where it changes nothing a program relies on (see
            // [`urgent_fits`]; never for a copying or checksumming reader).
            let urgent = if memory && self.limits.inject_urgent && urgent_fits(&path) {
                self.urgent()
                    .filter(|_| !mode.reader.is_some_and(is_copier))
            } else {
                None
            };
            if !memory || urgent.is_some() {
                let content = self.load(&path)?;
                let mut data = Vec::new();
                let mut shown = Vec::new();
                let mut header_len = 0;
                if let Some((header, ids)) = urgent
                    && std::str::from_utf8(&content).is_ok()
                {
                    data.extend_from_slice(header.as_bytes());
                    header_len = header.len();
                    shown = ids;
                }
                data.extend_from_slice(&content);
                lock(&self.handles).insert(
                    fh,
                    HandleKind::Snapshot {
                        ino,
                        data: Arc::new(data),
                        shown,
                        header_len,
                    },
                );
                return Ok((fh, true));
            }
        }
        // A file open elsewhere with changes (or one being created) is shared as it stands.
        if let Some(f) = &open {
            // Under the map's lock, as a release decides whether this was the last handle
            // (the kernel sends a close's release without waiting for it): a file it has
            // let go of is not joined, but opened afresh below.
            let files = lock(&self.files);
            let held = files.get(&ino).is_some_and(|g| Arc::ptr_eq(g, f));
            let mut d = lock(&f.data);
            if held && (d.new || d.dirty || d.unlinked) {
                if mode.truncate {
                    Self::truncate_at_open(&mut d);
                }
                d.handles += 1;
                drop(d);
                drop(files);
                lock(&self.handles).insert(
                    fh,
                    HandleKind::File {
                        ino,
                        append: mode.append,
                        wrote: false,
                    },
                );
                return Ok((fh, mode.append || !memory));
            }
        }
        // The open file, with this handle counted in while the map is locked: a release
        // running at the same time (the kernel does not wait for a close's release) cannot
        // drop it from the map, which would take this handle's writes with it.
        let file = {
            let mut files = lock(&self.files);
            let f = files
                .entry(ino)
                .or_insert_with(|| {
                    Arc::new(FileState {
                        store: Mutex::new(()),
                        data: Mutex::new(Data {
                            path: path.clone(),
                            bytes: Vec::new(),
                            dirty: false,
                            seq: 0,
                            new: false,
                            unlinked: false,
                            handles: 0,
                            mtime: SystemTime::now(),
                            mode: 0o644,
                            owner: None,
                            stat: None,
                        }),
                    })
                })
                .clone();
            lock(&f.data).handles += 1;
            f
        };
        // A reader needs only the content; a writer also the attributes a changed file shows
        // (mode, owner) until it is stored. Both are read while no store of this file is in
        // flight, and installed only if nothing was written to it since (its change counter
        // is where it was seen).
        let (stat, fresh, seen) = {
            let _g = lock(&file.store);
            let seen = lock(&file.data).seq;
            match self.open_state(ino, &path, mode) {
                Ok((stat, fresh)) => (stat, fresh, seen),
                Err(e) => {
                    drop(_g);
                    self.let_go(ino);
                    return Err(e);
                }
            }
        };
        {
            let mut d = lock(&file.data);
            if !d.dirty && !d.new && d.seq == seen {
                if let Some(a) = stat {
                    d.stat = Some(a);
                    d.mtime = a.mtime;
                    d.mode = u32::from(a.perm);
                }
                if let Some(bytes) = fresh {
                    d.bytes = bytes;
                }
            }
            if mode.truncate {
                Self::truncate_at_open(&mut d);
            }
        }
        lock(&self.handles).insert(
            fh,
            HandleKind::File {
                ino,
                append: mode.append,
                wrote: false,
            },
        );
        Ok((fh, mode.append || !memory))
    }

    /// What an open reads from the host: the stored attributes (for a writer) and the
    /// content (unless the open truncates).
    fn open_state(
        &self,
        ino: u64,
        path: &str,
        mode: OpenMode,
    ) -> Result<(Option<Attr>, Option<Vec<u8>>)> {
        let stat = if mode.write {
            let st = self.host.stat(&self.caller, &self.address(path)?)?;
            if st.kind == NodeKind::Dir {
                return Err(Error::new(
                    ErrorKind::IsADirectory,
                    format!("{path} is a directory"),
                ));
            }
            Some(self.attr_of(ino, &st))
        } else {
            None
        };
        let fresh = if mode.truncate {
            None
        } else {
            Some(self.load(path)?)
        };
        Ok((stat, fresh))
    }

    /// Gives back a handle counted in by an open that then failed: the open file goes when
    /// no handle holds it and it has nothing left to store.
    fn let_go(&self, ino: u64) {
        let mut files = lock(&self.files);
        let gone = files.get(&ino).is_some_and(|f| {
            let mut d = lock(&f.data);
            d.handles = d.handles.saturating_sub(1);
            d.handles == 0 && !d.dirty
        });
        if gone {
            files.remove(&ino);
        }
    }

    /// `O_TRUNC`: empty, and modified now (even when it was empty already, as on Linux).
    fn truncate_at_open(d: &mut Data) {
        d.bytes.clear();
        d.dirty = true;
        d.seq += 1;
        d.mtime = SystemTime::now();
    }

    /// Creates the file `name` in `parent` and opens it; nothing is stored until it is
    /// flushed or closed (one version, not two).
    pub fn create(
        &self,
        parent_ino: u64,
        name: &str,
        mode: u32,
        flags: OpenMode,
        owner: Owner,
    ) -> Result<(Attr, u64)> {
        let path = self.child(parent_ino, name)?;
        if name.starts_with('@') {
            return Err(Error::invalid(format!(
                "names starting with @ are shortcuts; {name} cannot be created"
            )));
        }
        if self.is_virtual(&path)? {
            self.check_write(&path)?;
            let fh = self.new_fh();
            lock(&self.handles).insert(
                fh,
                HandleKind::Virtual {
                    path: path.clone(),
                    buf: Vec::new(),
                    written: false,
                },
            );
            let ino = self.remember(&path);
            return Ok((Attr::generated(ino), fh));
        }
        self.check_write(&path)?;
        // The kernel asks to create only where its lookup found nothing; another process may
        // have written the name since, which matters for O_EXCL (otherwise the first store
        // simply updates what it wrote).
        if flags.exclusive && self.stat_path(&path).is_ok() {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("{path} already exists"),
            ));
        }
        // The kernel has looked the parent up as a directory; the store refuses a file whose
        // parent became a file meanwhile when it is stored.
        let ino = self.remember(&path);
        let now = SystemTime::now();
        let file = Arc::new(FileState {
            store: Mutex::new(()),
            data: Mutex::new(Data {
                path: path.clone(),
                bytes: Vec::new(),
                dirty: true,
                seq: 1,
                new: true,
                unlinked: false,
                handles: 1,
                mtime: now,
                mode: mode & 0o7777,
                owner: Some(owner),
                stat: None,
            }),
        });
        let attr = Attr::made(ino, 0, now, mode, Some(owner));
        lock(&self.files).insert(ino, file);
        let fh = self.new_fh();
        lock(&self.handles).insert(
            fh,
            HandleKind::File {
                ino,
                append: flags.append,
                wrote: false,
            },
        );
        Ok((attr, fh))
    }

    /// Reads `size` bytes at `offset` from an open handle.
    pub fn read(&self, fh: u64, offset: u64, size: usize) -> Result<Vec<u8>> {
        enum Src {
            File(u64),
            Snap(Arc<Vec<u8>>, Vec<i64>),
            Nothing,
        }
        let src = {
            let mut hs = lock(&self.handles);
            match hs.get_mut(&fh) {
                Some(HandleKind::File { ino, .. }) => Src::File(*ino),
                Some(HandleKind::Snapshot {
                    data,
                    shown,
                    header_len,
                    ..
                }) => {
                    // Only a read that returns the messages marks them read.
                    let sees_header = (offset as usize) < *header_len && size > 0;
                    let shown = if sees_header {
                        std::mem::take(shown)
                    } else {
                        Vec::new()
                    };
                    Src::Snap(data.clone(), shown)
                }
                Some(HandleKind::Virtual { .. }) => Src::Nothing,
                None => return Err(Error::invalid("unknown file handle")),
            }
        };
        let slice = |b: &[u8]| {
            let start = usize::try_from(offset).unwrap_or(usize::MAX).min(b.len());
            let end = start.saturating_add(size).min(b.len());
            b[start..end].to_vec()
        };
        match src {
            Src::File(ino) => {
                let f = self
                    .file(ino)
                    .ok_or_else(|| Error::invalid("the file of this handle is closed"))?;
                let d = lock(&f.data);
                Ok(slice(&d.bytes))
            }
            Src::Snap(data, shown) => {
                if !shown.is_empty() && self.caller.agent().is_some() {
                    // Shown once: the messages were read, so they are read now.
                    let ids: Vec<String> = shown.iter().map(i64::to_string).collect();
                    self.host.read(
                        &self.caller,
                        &format!("{}:inbox?mark=read&ids={}", self.own_root(), ids.join(",")),
                    )?;
                    self.forget_urgent();
                }
                Ok(slice(&data))
            }
            Src::Nothing => Ok(Vec::new()),
        }
    }

    /// Refuses growth the storage cannot take (checked against free space looked up at most
    /// every 200 ms: a version costs about four times its size while it is written).
    fn check_space(&self, new_len: u64) -> Result<()> {
        let need = new_len.saturating_mul(4).saturating_add(1 << 20);
        let mut s = lock(&self.space);
        let free = match *s {
            Some((at, free)) if at.elapsed() < Duration::from_millis(200) => free,
            _ => match self.host.capacity(&self.caller, "/memory") {
                Ok(Some(c)) => {
                    *s = Some((Instant::now(), c.free));
                    c.free
                }
                _ => return Ok(()),
            },
        };
        if free < need {
            return Err(Error::new(
                ErrorKind::StorageFull,
                format!(
                    "the storage holding the database has {free} bytes free; a file of {new_len} bytes needs about {need}"
                ),
            ));
        }
        Ok(())
    }

    fn too_large(&self, len: u64) -> Error {
        Error::new(
            ErrorKind::TooLarge,
            format!(
                "a file of {len} bytes is over the limit of {} bytes (max_node_bytes in config)",
                self.limits.max_bytes
            ),
        )
    }

    /// Writes `data` at `offset` through an open handle (at the end for `O_APPEND`).
    pub fn write(&self, fh: u64, offset: u64, data: &[u8]) -> Result<usize> {
        let (ino, append) = {
            let mut hs = lock(&self.handles);
            match hs.get_mut(&fh) {
                Some(HandleKind::File { ino, append, wrote }) => {
                    *wrote = true;
                    (*ino, *append)
                }
                Some(HandleKind::Virtual { buf, written, .. }) => {
                    let off = usize::try_from(offset).unwrap_or(usize::MAX);
                    let end = off
                        .checked_add(data.len())
                        .filter(|e| *e as u64 <= self.limits.max_bytes)
                        .ok_or_else(|| self.too_large(offset.saturating_add(data.len() as u64)))?;
                    if buf.len() < end {
                        buf.resize(end, 0);
                    }
                    buf[off..end].copy_from_slice(data);
                    *written = true;
                    return Ok(data.len());
                }
                Some(HandleKind::Snapshot { .. }) => {
                    return Err(Error::invalid("this handle was opened for reading"));
                }
                None => return Err(Error::invalid("unknown file handle")),
            }
        };
        let f = self
            .file(ino)
            .ok_or_else(|| Error::invalid("the file of this handle is closed"))?;
        let (off, cur) = {
            let d = lock(&f.data);
            let off = if append { d.bytes.len() as u64 } else { offset };
            (off, d.bytes.len() as u64)
        };
        let end = off
            .checked_add(data.len() as u64)
            .filter(|e| *e <= self.limits.max_bytes)
            .ok_or_else(|| self.too_large(off.saturating_add(data.len() as u64)))?;
        if end > cur {
            self.check_space(end)?;
        }
        let mut d = lock(&f.data);
        // Appends take the end as it is now, under the lock.
        let off = if append { d.bytes.len() } else { off as usize };
        let end = off + data.len();
        if end as u64 > self.limits.max_bytes {
            return Err(self.too_large(end as u64));
        }
        if d.bytes.len() < end {
            d.bytes.resize(end, 0);
        }
        d.bytes[off..end].copy_from_slice(data);
        d.dirty = true;
        d.seq += 1;
        d.mtime = SystemTime::now();
        Ok(data.len())
    }

    /// Stores an open file's buffer if it changed (one new version).
    fn store_file(&self, f: &FileState) -> Result<()> {
        let _names = shared(&self.names);
        let _g = lock(&f.store);
        let (path, bytes, seq, new, mode, owner, mtime) = {
            let d = lock(&f.data);
            if !d.dirty || d.unlinked {
                return Ok(());
            }
            (
                d.path.clone(),
                d.bytes.clone(),
                d.seq,
                d.new,
                d.mode,
                d.owner,
                d.mtime,
            )
        };
        let attrs = SetAttrs {
            mode: new.then_some(mode),
            uid: if new { owner.map(|o| o.uid) } else { None },
            gid: if new { owner.map(|o| o.gid) } else { None },
            atime: None,
            mtime: Some(to_nanos(mtime)),
        };
        self.host.write(
            &self.caller,
            &self.address(&path)?,
            WriteInput::Put(Put {
                content: Some(Content::from_bytes(bytes)),
                attrs,
                ..Put::default()
            }),
        )?;
        let mut d = lock(&f.data);
        if d.seq == seq {
            d.dirty = false;
        }
        if d.new {
            // What the store now holds, without asking it: the attributes it was given.
            d.stat = Some(Attr {
                ctime: SystemTime::now(),
                ..Attr::made(0, d.bytes.len() as u64, mtime, mode, owner)
            });
        }
        d.new = false;
        Ok(())
    }

    fn send_virtual(&self, fh: u64) -> Result<()> {
        let job = {
            let mut hs = lock(&self.handles);
            match hs.get_mut(&fh) {
                Some(HandleKind::Virtual { path, buf, written }) if *written => {
                    *written = false;
                    Some((path.clone(), std::mem::take(buf)))
                }
                _ => None,
            }
        };
        let Some((path, buf)) = job else {
            return Ok(());
        };
        let text = String::from_utf8(buf).map_err(|_| {
            Error::invalid(format!(
                "{path} takes UTF-8 text, and what was written is not"
            ))
        })?;
        self.host
            .write(&self.caller, &self.address(&path)?, WriteInput::Text(text))?;
        Ok(())
    }

    /// Stores what a handle wrote (at close, so errors reach the writer; a close of a handle
    /// that wrote nothing since stores nothing — the last release stores what is left).
    pub fn flush(&self, fh: u64) -> Result<()> {
        self.store_handle(fh, false)
    }

    /// Stores the file of a handle now, whoever changed it (`fsync`).
    pub fn fsync(&self, fh: u64) -> Result<()> {
        self.store_handle(fh, true)
    }

    fn store_handle(&self, fh: u64, always: bool) -> Result<()> {
        let ino = match lock(&self.handles).get_mut(&fh) {
            Some(HandleKind::File { ino, wrote, .. }) => {
                if !*wrote && !always {
                    return Ok(());
                }
                *wrote = false;
                Some(*ino)
            }
            Some(_) => None,
            None => return Ok(()),
        };
        match ino {
            Some(ino) => match self.file(ino) {
                Some(f) => self.store_file(&f),
                None => Ok(()),
            },
            None => self.send_virtual(fh),
        }
    }

    /// Closes a handle, storing anything not stored yet; the open file goes with its last
    /// handle.
    pub fn release(&self, fh: u64) -> Result<()> {
        let r = self.store_handle(fh, false);
        let h = lock(&self.handles).remove(&fh);
        if let Some(HandleKind::File { ino, .. }) = h {
            let last = {
                let files = lock(&self.files);
                match files.get(&ino) {
                    Some(f) => {
                        let mut d = lock(&f.data);
                        d.handles = d.handles.saturating_sub(1);
                        d.handles == 0
                    }
                    None => false,
                }
            };
            if last {
                // A close that failed to store above is retried once more here.
                let r2 = match self.file(ino) {
                    Some(f) => self.store_file(&f),
                    None => Ok(()),
                };
                {
                    let mut files = lock(&self.files);
                    if files.get(&ino).is_some_and(|f| lock(&f.data).handles == 0) {
                        files.remove(&ino);
                    }
                }
                self.maybe_drop(ino);
                return r.and(r2);
            }
        }
        r
    }

    /// Changes attributes of `ino` (through the handle `fh` when `ftruncate` gives one).
    pub fn setattr(&self, ino: u64, fh: Option<u64>, ch: AttrChange) -> Result<Attr> {
        let path = self.path_of(ino)?;
        if self.is_virtual(&path)? {
            return self.getattr(ino);
        }
        let file = self.file(ino);
        if let Some(size) = ch.size {
            if size > self.limits.max_bytes {
                return Err(self.too_large(size));
            }
            match &file {
                Some(f) => {
                    if lock(&f.data).stat.is_none() && !lock(&f.data).new {
                        let st = self.host.stat(&self.caller, &self.address(&path)?)?;
                        let a = self.attr_of(ino, &st);
                        lock(&f.data).stat = Some(a);
                    }
                    let grow = size > lock(&f.data).bytes.len() as u64;
                    if grow {
                        self.check_space(size)?;
                    }
                    {
                        let mut d = lock(&f.data);
                        d.bytes.resize(size as usize, 0);
                        d.dirty = true;
                        d.seq += 1;
                        d.mtime = SystemTime::now();
                    }
                    // truncate(2) by path changes the file now; ftruncate(2) on a descriptor
                    // is stored with the rest of that descriptor's writes.
                    match fh {
                        None => self.store_file(f)?,
                        Some(h) => {
                            if let Some(HandleKind::File { wrote, .. }) =
                                lock(&self.handles).get_mut(&h)
                            {
                                *wrote = true;
                            }
                        }
                    }
                }
                None => {
                    self.check_write(&path)?;
                    let st = self.host.stat(&self.caller, &self.address(&path)?)?;
                    if st.kind == NodeKind::Dir {
                        return Err(Error::new(
                            ErrorKind::IsADirectory,
                            format!("{path} is a directory"),
                        ));
                    }
                    if size > st.size {
                        self.check_space(size)?;
                    }
                    let mut bytes = self.load(&path)?;
                    bytes.resize(size as usize, 0);
                    self.host.write(
                        &self.caller,
                        &self.address(&path)?,
                        WriteInput::Put(Put {
                            content: Some(Content::from_bytes(bytes)),
                            attrs: SetAttrs {
                                mtime: Some(avm_core::time::now_nanos()),
                                ..SetAttrs::default()
                            },
                            ..Put::default()
                        }),
                    )?;
                }
            }
        }
        let set = SetAttrs {
            mode: ch.mode.map(|m| m & 0o7777),
            uid: ch.uid,
            gid: ch.gid,
            atime: ch.atime.map(to_nanos),
            mtime: ch.mtime.map(to_nanos),
        };
        if !set.is_empty() {
            // Waits for a store in flight, so the attributes land either with the first
            // version or on the stored node, never between the two.
            let _g = file.as_ref().map(|f| lock(&f.store));
            let pending = file.as_ref().is_some_and(|f| lock(&f.data).new);
            match &file {
                Some(f) if pending => {
                    // Not stored yet: the attributes go with the first version.
                    let mut d = lock(&f.data);
                    if let Some(m) = set.mode {
                        d.mode = m;
                    }
                    let mut o = d.owner.unwrap_or_default();
                    if let Some(u) = set.uid {
                        o.uid = u;
                    }
                    if let Some(g) = set.gid {
                        o.gid = g;
                    }
                    d.owner = Some(o);
                    if let Some(t) = ch.mtime {
                        d.mtime = t;
                    }
                }
                _ => {
                    let st = self
                        .host
                        .set_attrs(&self.caller, &self.address(&path)?, &set)?;
                    if let Some(f) = &file {
                        let a = self.attr_of(ino, &st);
                        let mut d = lock(&f.data);
                        d.stat = Some(a);
                        if let Some(t) = ch.mtime {
                            // A later store of this buffer keeps the time set here.
                            d.mtime = t;
                        }
                    }
                }
            }
        }
        self.getattr(ino)
    }

    /// The target of the symbolic link `ino`.
    pub fn readlink(&self, ino: u64) -> Result<Vec<u8>> {
        let path = self.path_of(ino)?;
        let st = self.host.stat(&self.caller, &self.address(&path)?)?;
        if st.kind != NodeKind::Symlink {
            return Err(Error::invalid(format!("{path} is not a symbolic link")));
        }
        self.load(&path)
    }

    /// Makes a directory.
    pub fn mkdir(&self, parent_ino: u64, name: &str, mode: u32, owner: Owner) -> Result<Attr> {
        let path = self.child(parent_ino, name)?;
        self.host.mkdir(&self.caller, &self.address(&path)?)?;
        let set = SetAttrs {
            mode: Some(mode & 0o7777),
            uid: Some(owner.uid),
            gid: Some(owner.gid),
            ..SetAttrs::default()
        };
        let st = self
            .host
            .set_attrs(&self.caller, &self.address(&path)?, &set)?;
        let ino = self.remember(&path);
        Ok(self.attr_of(ino, &st))
    }

    /// Makes a symbolic link `name` in `parent` pointing at `target`.
    pub fn symlink(&self, parent_ino: u64, name: &str, target: &str, owner: Owner) -> Result<Attr> {
        let path = self.child(parent_ino, name)?;
        if self.is_virtual(&path)? {
            return Err(Error::denied(format!(
                "{path} is generated; no link can be made there"
            )));
        }
        let st = self.host.symlink(
            &self.caller,
            &self.address(&path)?,
            target,
            &SetAttrs {
                uid: Some(owner.uid),
                gid: Some(owner.gid),
                ..SetAttrs::default()
            },
        )?;
        let ino = self.remember(&path);
        Ok(self.attr_of(ino, &st))
    }

    /// What `path` is now, as the attributes it keeps once its name is gone.
    fn last_attr(&self, path: &str) -> Option<Attr> {
        self.stat_path(path).ok().map(|a| Attr { nlink: 0, ..a })
    }

    /// Marks the inode at `path` (if any) and its open file as gone; `last` is what it was.
    fn mark_unlinked(&self, path: &str, last: Option<Attr>) {
        let ino = {
            let mut i = lock(&self.inodes);
            let ino = i.by_path.remove(path);
            if let Some(n) = ino
                && let Some(e) = i.by_ino.get_mut(&n)
            {
                e.unlinked = true;
                e.gone = last.map(|a| Attr { ino: n, ..a });
            }
            ino
        };
        if let Some(n) = ino
            && let Some(f) = self.file(n)
        {
            lock(&f.data).unlinked = true;
        }
    }

    /// Removes a file (to the trash). A file open elsewhere stays readable and writable
    /// through its descriptors and is never stored again.
    pub fn unlink(&self, parent_ino: u64, name: &str) -> Result<()> {
        let path = self.child(parent_ino, name)?;
        if self.is_virtual(&path)? {
            return Err(Error::new(
                ErrorKind::PermissionDenied,
                format!("{path} is generated and cannot be removed"),
            ));
        }
        // No store runs while the name goes (one in flight finishes first).
        let names = exclusive(&self.names);
        let ino = lock(&self.inodes).by_path.get(&path).copied();
        let file = ino.and_then(|n| self.file(n));
        let pending = file.as_ref().is_some_and(|f| lock(&f.data).new);
        let last = if ino.is_some() {
            self.last_attr(&path)
        } else {
            None
        };
        if !pending {
            let st = self.host.stat(&self.caller, &self.address(&path)?)?;
            if st.kind == NodeKind::Dir {
                return Err(Error::new(
                    ErrorKind::IsADirectory,
                    format!("{path} is a directory; use rmdir"),
                ));
            }
            self.host.remove(
                &self.caller,
                &self.address(&path)?,
                RemoveOptions::default(),
            )?;
        }
        self.mark_unlinked(&path, last);
        drop(names);
        Ok(())
    }

    /// Removes an empty directory.
    pub fn rmdir(&self, parent_ino: u64, name: &str) -> Result<()> {
        let path = self.child(parent_ino, name)?;
        let names = exclusive(&self.names);
        let pending = lock(&self.files).values().any(|f| {
            let d = lock(&f.data);
            d.new && !d.unlinked && is_within(&d.path, &path)
        });
        if pending {
            return Err(Error::new(
                ErrorKind::NotEmpty,
                format!("{path} is not empty (a file is being created in it)"),
            ));
        }
        let last = if lock(&self.inodes).by_path.contains_key(&path) {
            self.last_attr(&path)
        } else {
            None
        };
        match self.host.rmdir(&self.caller, &self.address(&path)?) {
            Ok(_) => {}
            // A directory that held only files is gone with its last file; the kernel still
            // knew it, and removing it is what was asked.
            Err(e)
                if e.kind() == ErrorKind::NotFound
                    && lock(&self.inodes).by_path.contains_key(&path) => {}
            Err(e) => return Err(e),
        }
        self.mark_unlinked(&path, last);
        drop(names);
        Ok(())
    }

    /// Stores every changed open file at or below `path` (strictly below with `inside`), so
    /// the store sees what the mount shows before a rename moves or checks it.
    fn store_below(&self, path: &str, inside: bool) -> Result<()> {
        let open: Vec<Arc<FileState>> = lock(&self.files)
            .values()
            .filter(|f| {
                let d = lock(&f.data);
                d.dirty && !d.unlinked && is_within(&d.path, path) && !(inside && d.path == path)
            })
            .cloned()
            .collect();
        for f in open {
            self.store_file(&f)?;
        }
        Ok(())
    }

    /// Renames with `rename(2)` semantics (`how` from the flags).
    pub fn rename(
        &self,
        parent_ino: u64,
        name: &str,
        new_parent: u64,
        new_name: &str,
        how: Rename,
    ) -> Result<()> {
        let from = self.child(parent_ino, name)?;
        let to = self.child(new_parent, new_name)?;
        if self.is_virtual(&from)? || self.is_virtual(&to)? {
            return Err(Error::new(
                ErrorKind::PermissionDenied,
                "generated files cannot be renamed",
            ));
        }
        if new_name.starts_with('@') {
            return Err(Error::invalid(format!(
                "names starting with @ are shortcuts; {new_name} cannot be made"
            )));
        }
        // What is being created or written at the source goes to the store first, so the
        // store moves it; what waits to be stored at a replaced destination never will be.
        self.store_below(&from, false)?;
        // A directory at the destination must look as full to the store as it does here.
        self.store_below(&to, how != Rename::Exchange)?;
        let dst_ino = lock(&self.inodes).by_path.get(&to).copied();
        let dst_last = match (how, dst_ino) {
            (Rename::Replace, Some(_)) => self.last_attr(&to),
            _ => None,
        };
        let dst_file = dst_ino.and_then(|n| self.file(n));
        // No store runs from here until the open files point at their new names.
        let names = exclusive(&self.names);
        // A destination being created exists only here (the store sees a plain move): it is
        // replaced like a stored one, and refused like one.
        let dst_pending = dst_file.as_ref().is_some_and(|f| lock(&f.data).new);
        if dst_pending && how == Rename::NoReplace {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("{to} already exists"),
            ));
        }
        self.host.rename_posix(
            &self.caller,
            &self.address(&from)?,
            &self.address(&to)?,
            how,
        )?;
        match how {
            Rename::Exchange => self.swap_paths(&from, &to),
            _ => {
                if from != to {
                    self.mark_unlinked(&to, dst_last);
                    self.move_paths(&from, &to);
                }
            }
        }
        drop(names);
        Ok(())
    }

    /// Re-points every inode and open file at or below `from` to the same place below `to`.
    fn move_paths(&self, from: &str, to: &str) {
        let moved = {
            let mut i = lock(&self.inodes);
            let moved: Vec<(String, u64)> = i
                .by_path
                .iter()
                .filter(|(p, _)| is_within(p, from))
                .map(|(p, n)| (p.clone(), *n))
                .collect();
            for (p, _) in &moved {
                i.by_path.remove(p);
            }
            for (p, n) in &moved {
                let np = format!("{to}{}", &p[from.len()..]);
                i.by_path.insert(np.clone(), *n);
                if let Some(e) = i.by_ino.get_mut(n) {
                    e.path = np;
                }
            }
            moved
        };
        let files = lock(&self.files);
        for (_, n) in moved {
            if let Some(f) = files.get(&n) {
                let mut d = lock(&f.data);
                if is_within(&d.path, from) {
                    d.path = format!("{to}{}", &d.path[from.len()..]);
                }
            }
        }
    }

    /// Swaps the inodes and open files at or below `a` and `b`.
    fn swap_paths(&self, a: &str, b: &str) {
        let tmp = "\u{1}swap";
        self.move_paths(a, tmp);
        self.move_paths(b, a);
        self.move_paths(tmp, b);
    }

    /// `fallocate` mode 0 (reserve, growing the file with zeros) and `FALLOC_FL_KEEP_SIZE`;
    /// other modes are not supported.
    pub fn fallocate(&self, fh: u64, offset: u64, length: u64, mode: i32) -> Result<()> {
        const KEEP_SIZE: i32 = 1;
        if mode & !KEEP_SIZE != 0 {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "only plain fallocate and FALLOC_FL_KEEP_SIZE are supported",
            ));
        }
        let end = offset.saturating_add(length);
        if end > self.limits.max_bytes {
            return Err(self.too_large(end));
        }
        let ino = match lock(&self.handles).get(&fh) {
            Some(HandleKind::File { ino, .. }) => *ino,
            _ => {
                return Err(Error::invalid(
                    "fallocate needs a regular file opened for writing",
                ));
            }
        };
        let f = self
            .file(ino)
            .ok_or_else(|| Error::invalid("the file of this handle is closed"))?;
        self.check_space(end)?;
        if mode & KEEP_SIZE == 0 {
            let mut d = lock(&f.data);
            if (d.bytes.len() as u64) < end {
                d.bytes.resize(end as usize, 0);
                d.dirty = true;
                d.seq += 1;
                d.mtime = SystemTime::now();
            }
        }
        Ok(())
    }

    /// Size and free space of the storage, in bytes, when the provider knows them.
    pub fn statfs(&self) -> Option<(u64, u64)> {
        match self.host.capacity(&self.caller, "/memory") {
            Ok(Some(c)) => Some((c.total, c.free)),
            _ => None,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use avm_core::Mount;
    use avm_provider_memory::MemoryProvider;

    const ALICE: &str = "/memory/private/alice";

    fn core(agent: &str) -> (tempfile::TempDir, Core, Arc<Host>) {
        let dir = tempfile::tempdir().unwrap();
        let mem = MemoryProvider::open(&dir.path().join("a.db"), Default::default()).unwrap();
        let store = mem.memory_store();
        let tell = Arc::new(avm_tell::TellProvider::new(store.clone()));
        let recall = avm_recall::Engine::new(store, avm_recall::Tuning::default());
        let host = Arc::new(
            Host::new(vec![
                Mount::new("/**", Arc::new(mem)),
                Mount::new("/tell/**", tell.clone()),
            ])
            .unwrap()
            .with_service(tell)
            .with_service(Arc::new(avm_recall::RecallProvider::new(recall))),
        );
        let c = Core::new(host.clone(), Caller::Agent(agent.into()));
        (dir, c, host)
    }

    /// The inode of a directory path, looked up component by component as the kernel does.
    fn dir_ino(c: &Core, path: &str) -> u64 {
        let mut ino = ROOT;
        for part in path.split('/').filter(|p| !p.is_empty()) {
            ino = c.lookup(ino, part).unwrap().ino;
        }
        ino
    }

    fn rw() -> OpenMode {
        OpenMode {
            write: true,
            ..OpenMode::default()
        }
    }

    #[test]
    fn a_created_file_is_stored_once_at_close_and_listed_meanwhile() {
        let (_d, c, host) = core("alice");
        let dir = dir_ino(&c, ALICE);
        let (a, fh) = c
            .create(dir, "n.md", 0o644, rw(), Owner::default())
            .unwrap();
        assert_eq!(c.getattr(a.ino).unwrap().kind, Kind::File);
        assert!(c.readdir(dir).unwrap().iter().any(|(n, _, _)| n == "n.md"));
        c.write(fh, 0, b"hello").unwrap();
        c.release(fh).unwrap();
        let h = host
            .read(c.caller(), "/memory/private/alice/n.md:history")
            .unwrap();
        assert_eq!(h.text.lines().count(), 1, "{}", h.text);
        assert_eq!(c.getattr(a.ino).unwrap().size, 5);
    }

    /// The kernel sends a close's release without waiting for it, so an open of the same
    /// file can run while the release decides that its handle was the last one. The open
    /// must join the file or start a new one, never hold one the release dropped (its
    /// writes and its size would be lost to every other descriptor and to stat).
    #[test]
    fn an_open_racing_a_release_keeps_its_file() {
        let (_d, c, _h) = core("alice");
        let c = Arc::new(c);
        let dir = dir_ino(&c, ALICE);
        let (a, fh) = c
            .create(dir, "r.md", 0o644, rw(), Owner::default())
            .unwrap();
        c.write(fh, 0, b"zzzzzz").unwrap();
        c.release(fh).unwrap();
        let ino = a.ino;
        let spawn = |bytes: &'static [u8], truncate: bool| {
            let c = c.clone();
            std::thread::spawn(move || {
                for i in 0..400 {
                    let mode = OpenMode { truncate, ..rw() };
                    let (fh, _) = c.open(ino, mode).unwrap();
                    c.write(fh, 0, bytes)
                        .unwrap_or_else(|e| panic!("write {i}: {e}"));
                    let size = c.getattr(ino).unwrap().size;
                    assert_eq!(size, 6, "round {i}: stat of a file open with 6 bytes");
                    let back = c.read(fh, 0, 10).unwrap();
                    assert!(
                        back == b"abcdef" || back == b"yyyyyy",
                        "round {i}: read {back:?}"
                    );
                    c.release(fh).unwrap();
                }
            })
        };
        let t1 = spawn(b"abcdef", true);
        let t2 = spawn(b"yyyyyy", false);
        t1.join().unwrap();
        t2.join().unwrap();
        assert!(
            lock(&c.files).is_empty(),
            "an open file outlived its handles"
        );
    }

    #[test]
    fn bytes_that_are_not_text_are_kept_exactly() {
        let (_d, c, host) = core("alice");
        let dir = dir_ino(&c, ALICE);
        let raw = [0u8, 0x80, 0xff, b'\n', 0xc3];
        let (a, fh) = c
            .create(dir, "b.bin", 0o644, rw(), Owner::default())
            .unwrap();
        c.write(fh, 0, &raw).unwrap();
        c.release(fh).unwrap();
        let (fh, _) = c.open(a.ino, OpenMode::default()).unwrap();
        assert_eq!(c.read(fh, 0, 100).unwrap(), raw);
        c.release(fh).unwrap();
        let o = host
            .read(c.caller(), "/memory/private/alice/b.bin")
            .unwrap();
        assert!(o.is_binary());
        assert_eq!(o.bytes(), raw);
    }

    #[test]
    fn writes_are_seen_at_once_through_every_descriptor_and_by_stat() {
        let (_d, c, _h) = core("alice");
        let dir = dir_ino(&c, ALICE);
        let (a, w) = c
            .create(dir, "s.md", 0o644, rw(), Owner::default())
            .unwrap();
        let (r, _) = c.open(a.ino, OpenMode::default()).unwrap();
        c.write(w, 0, b"abc").unwrap();
        assert_eq!(c.read(r, 0, 10).unwrap(), b"abc");
        assert_eq!(c.getattr(a.ino).unwrap().size, 3);
        // A hole reads as zeros.
        c.write(w, 6, b"z").unwrap();
        assert_eq!(c.read(r, 0, 10).unwrap(), b"abc\0\0\0z");
        c.release(w).unwrap();
        c.release(r).unwrap();
    }

    #[test]
    fn two_writers_merge_and_appends_land_at_the_end() {
        let (_d, c, host) = core("alice");
        let dir = dir_ino(&c, ALICE);
        let (a, w1) = c
            .create(dir, "m.md", 0o644, rw(), Owner::default())
            .unwrap();
        c.write(w1, 0, b"0123456789").unwrap();
        c.flush(w1).unwrap();
        let (w2, _) = c.open(a.ino, rw()).unwrap();
        let (ap, _) = c
            .open(
                a.ino,
                OpenMode {
                    write: true,
                    append: true,
                    ..OpenMode::default()
                },
            )
            .unwrap();
        c.write(w1, 0, b"AB").unwrap();
        c.write(w2, 5, b"xy").unwrap();
        c.write(ap, 0, b"!").unwrap();
        for h in [w1, w2, ap] {
            c.release(h).unwrap();
        }
        assert_eq!(
            host.read(c.caller(), "/memory/private/alice/m.md")
                .unwrap()
                .text,
            "AB234xy789!"
        );
    }

    #[test]
    fn an_unlinked_open_file_stays_usable_and_is_never_stored_again() {
        let (_d, c, host) = core("alice");
        let dir = dir_ino(&c, ALICE);
        let (a, fh) = c
            .create(dir, "u.md", 0o644, rw(), Owner::default())
            .unwrap();
        c.write(fh, 0, b"one").unwrap();
        c.flush(fh).unwrap();
        c.unlink(dir, "u.md").unwrap();
        c.write(fh, 3, b" two").unwrap();
        assert_eq!(c.read(fh, 0, 100).unwrap(), b"one two");
        assert_eq!(c.getattr(a.ino).unwrap().nlink, 0);
        c.release(fh).unwrap();
        assert_eq!(
            host.stat(c.caller(), "/memory/private/alice/u.md")
                .unwrap_err()
                .kind(),
            ErrorKind::NotFound
        );
    }

    #[test]
    fn create_then_unlink_leaves_nothing_behind() {
        let (_d, c, host) = core("alice");
        let dir = dir_ino(&c, ALICE);
        for i in 0..50 {
            let name = format!("f{i}");
            let (_, fh) = c.create(dir, &name, 0o644, rw(), Owner::default()).unwrap();
            c.flush(fh).unwrap();
            c.unlink(dir, &name).unwrap();
            c.release(fh).unwrap();
        }
        let l = host
            .list(c.caller(), ALICE, &ListOptions::default())
            .unwrap();
        assert!(l.entries.is_empty(), "{:?}", l.entries);
    }

    #[test]
    fn a_write_past_the_size_limit_is_refused_without_allocating() {
        let (_d, c, _h) = core("alice");
        let dir = dir_ino(&c, ALICE);
        let (a, fh) = c.create(dir, "big", 0o644, rw(), Owner::default()).unwrap();
        let e = c
            .setattr(
                a.ino,
                Some(fh),
                AttrChange {
                    size: Some(999_999_999_999_999),
                    ..AttrChange::default()
                },
            )
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TooLarge);
        let e = c.write(fh, u64::MAX - 2, b"abc").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TooLarge);
        c.release(fh).unwrap();
    }

    #[test]
    fn lookups_of_missing_names_keep_no_inodes_and_forget_drops_known_ones() {
        let (_d, c, _h) = core("alice");
        let dir = dir_ino(&c, ALICE);
        let before = c.inode_count();
        for i in 0..1000 {
            assert!(c.lookup(dir, &format!("missing{i}")).is_err());
        }
        assert_eq!(c.inode_count(), before);
        let (a, fh) = c
            .create(dir, "k.md", 0o644, rw(), Owner::default())
            .unwrap();
        c.release(fh).unwrap();
        assert_eq!(c.inode_count(), before + 1);
        c.forget(a.ino, 1);
        assert_eq!(c.inode_count(), before);
    }

    #[test]
    fn suffixes_queries_help_and_tell_are_virtual_and_not_removable() {
        let (_d, c, _h) = core("alice");
        let dir = dir_ino(&c, ALICE);
        let (_, fh) = c
            .create(dir, "v.md", 0o644, rw(), Owner::default())
            .unwrap();
        c.write(fh, 0, b"x").unwrap();
        c.release(fh).unwrap();
        for v in [
            format!("{ALICE}/v.md:meta"),
            "/:help".to_string(),
            "/memory:search?q=x".to_string(),
            "/tell/bob".to_string(),
        ] {
            assert_eq!(c.stat_path(&v).unwrap().kind, Kind::Virtual, "{v}");
        }
        assert_eq!(
            c.unlink(dir, "v.md:meta").unwrap_err().kind(),
            ErrorKind::PermissionDenied
        );
        let help_ino = c.lookup(ROOT, ":help").unwrap().ino;
        let (fh, direct) = c.open(help_ino, OpenMode::default()).unwrap();
        assert!(direct);
        let a = c.read(fh, 0, 5).unwrap();
        let b = c.read(fh, 5, 1 << 20).unwrap();
        assert_eq!(
            String::from_utf8([a, b].concat()).unwrap(),
            help(Some("alice"))
        );
    }

    #[test]
    fn shortcuts_resolve_by_node_id_and_private_paths_of_others_are_refused() {
        let (_d, c, host) = core("alice");
        host.write(
            c.caller(),
            "/memory/shared/s.md",
            WriteInput::Text("shared".into()),
        )
        .unwrap();
        let list = host.read(c.caller(), "/memory/shared:list").unwrap().text;
        let short = list.split_whitespace().next().unwrap().to_string();
        let shared = dir_ino(&c, "/memory/shared");
        let ino = c.lookup(shared, &short).unwrap().ino;
        let (fh, _) = c.open(ino, OpenMode::default()).unwrap();
        assert_eq!(c.read(fh, 0, 100).unwrap(), b"shared");
        let private = dir_ino(&c, "/memory/private");
        let e = c.lookup(private, "bob").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PermissionDenied);
        assert_eq!(crate::fs::errno(e.kind()), fuser::Errno::EACCES);
        let dir = dir_ino(&c, ALICE);
        assert!(
            c.create(dir, "@bad", 0o644, rw(), Owner::default())
                .is_err()
        );
    }
}
