//! The filesystem logic, independent of the kernel: paths and inodes, open handles, what each
//! operation does to the host. [`crate::fs`] is the thin fuser layer on top; tests drive this
//! core directly.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use avm_core::address::{basename, is_within, join, parent};
use avm_core::storage::MemoryStore;
use avm_core::{
    Action, Caller, Error, ErrorKind, Host, ListOptions, NodeKind, Put, RemoveOptions, Result,
    WriteInput,
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
    /// Creation.
    pub ctime: SystemTime,
    /// Last access.
    pub atime: SystemTime,
    /// Permission bits.
    pub perm: u16,
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
}

#[derive(Debug)]
struct Handle {
    path: String,
    kind: Kind,
    /// What reads return (taken at open, so chunked reads agree).
    snapshot: Option<Arc<Vec<u8>>>,
    /// What will be written back; `None` until the first write or truncate.
    buf: Option<Vec<u8>>,
    dirty: bool,
    /// Bytes were written since the last store (a close without writes, like the one bash
    /// makes after dup2, stores nothing: that would be an extra, empty version).
    written: bool,
    /// Created through this handle and not stored yet.
    new: bool,
    /// Urgent messages shown in the snapshot, marked read at the first read.
    shown: Vec<i64>,
}

#[derive(Default)]
struct Inodes {
    by_ino: HashMap<u64, String>,
    by_path: HashMap<String, u64>,
    next: u64,
}

/// When the urgent block was looked up, and what it was (header text, message ids).
type UrgentCache = (Option<Instant>, Option<(String, Vec<i64>)>);

/// Files being created (not stored until closed), by path, with their handle.
type Pending = HashMap<String, u64>;

/// The filesystem core for one mount.
pub struct Core {
    host: Arc<Host>,
    caller: Caller,
    store: Option<Arc<dyn MemoryStore>>,
    inodes: Mutex<Inodes>,
    handles: Mutex<HashMap<u64, Handle>>,
    pending: Mutex<Pending>,
    next_fh: AtomicU64,
    /// Unread urgent messages, looked up at most every 250 ms (getattr asks for every file).
    urgent: Mutex<UrgentCache>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn time(us: Option<i64>) -> SystemTime {
    match us {
        Some(t) if t > 0 => UNIX_EPOCH + Duration::from_micros(t as u64),
        _ => SystemTime::now(),
    }
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

impl Core {
    /// A core serving `host` as `caller`; `store` enables messages and shortcuts.
    pub fn new(host: Arc<Host>, caller: Caller, store: Option<Arc<dyn MemoryStore>>) -> Self {
        let mut inodes = Inodes {
            next: ROOT + 1,
            ..Inodes::default()
        };
        inodes.by_ino.insert(ROOT, "/".into());
        inodes.by_path.insert("/".into(), ROOT);
        Core {
            host,
            caller,
            store,
            inodes: Mutex::new(inodes),
            handles: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            urgent: Mutex::new((None, None)),
        }
    }

    /// The caller this mount acts as.
    pub fn caller(&self) -> &Caller {
        &self.caller
    }

    /// The path of an inode.
    pub fn path_of(&self, ino: u64) -> Result<String> {
        lock(&self.inodes)
            .by_ino
            .get(&ino)
            .cloned()
            .ok_or_else(|| Error::new(ErrorKind::NotFound, format!("inode {ino} is unknown")))
    }

    /// The inode of `path` (assigned on first sight).
    pub fn ino(&self, path: &str) -> u64 {
        self.ino_of(path)
    }

    fn ino_of(&self, path: &str) -> u64 {
        let mut i = lock(&self.inodes);
        if let Some(n) = i.by_path.get(path) {
            return *n;
        }
        let n = i.next;
        i.next += 1;
        i.by_ino.insert(n, path.to_string());
        i.by_path.insert(path.to_string(), n);
        n
    }

    /// The path of `name` inside the directory `parent_ino`.
    pub fn child(&self, parent_ino: u64, name: &str) -> Result<String> {
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(Error::invalid(format!("bad name {name:?}")));
        }
        Ok(join(&self.path_of(parent_ino)?, name))
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
        let Some(store) = &self.store else {
            return Err(Error::not_found(path));
        };
        let node = avm_core::storage::shortcut_id(id)
            .map(|n| store.path_of_id(n))
            .transpose()?
            .flatten()
            .ok_or_else(|| Error::not_found(path))?;
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
        let addr = self.host.parse(&self.caller, &self.address(path)?)?;
        Ok(addr.suffix.is_some() || !addr.query.is_empty())
    }

    fn urgent(&self) -> Option<(String, Vec<i64>)> {
        let (Some(store), Some(agent)) = (&self.store, self.caller.agent()) else {
            return None;
        };
        let mut u = lock(&self.urgent);
        if u.0.is_none_or(|t| t.elapsed() > Duration::from_millis(250)) {
            u.1 = crate::urgent_block(store.as_ref(), agent).ok().flatten();
            u.0 = Some(Instant::now());
        }
        u.1.clone()
    }

    fn forget_urgent(&self) {
        lock(&self.urgent).0 = None;
    }

    /// Attributes of `path`.
    pub fn getattr(&self, path: &str) -> Result<Attr> {
        let ino = self.ino_of(path);
        let name = basename(path);
        if name.starts_with("._") || name == ".DS_Store" {
            return Err(Error::not_found(path));
        }
        let now = SystemTime::now();
        let dir = |ino| Attr {
            ino,
            kind: Kind::Dir,
            size: 0,
            mtime: now,
            ctime: now,
            atime: now,
            perm: 0o755,
        };
        if path == "/" {
            return Ok(dir(ino));
        }
        if let Some(fh) = lock(&self.pending).get(path).copied() {
            let size = lock(&self.handles)
                .get(&fh)
                .and_then(|h| h.buf.as_ref().map(|b| b.len() as u64))
                .unwrap_or(0);
            return Ok(Attr {
                ino,
                kind: Kind::File,
                size,
                mtime: now,
                ctime: now,
                atime: now,
                perm: 0o644,
            });
        }
        if self.is_virtual(path)? {
            if path.starts_with("/tell/") {
                self.host.stat(&self.caller, path)?;
            } else if !Self::is_help(path) {
                // The node a suffix hangs on must exist and be visible (content is generated
                // only when read, so stat never triggers a query or moves a marker).
                let addr = self.host.parse(&self.caller, &self.address(path)?)?;
                self.host.stat(&self.caller, &addr.path)?;
            }
            return Ok(Attr {
                ino,
                kind: Kind::Virtual,
                size: 0,
                mtime: now,
                ctime: now,
                atime: now,
                perm: 0o644,
            });
        }
        let st = self.host.stat(&self.caller, &self.address(path)?)?;
        match st.kind {
            NodeKind::Dir => Ok(dir(ino)),
            NodeKind::File => {
                let extra = self.urgent().map(|(h, _)| h.len() as u64).unwrap_or(0);
                Ok(Attr {
                    ino,
                    kind: Kind::File,
                    size: st.size + extra,
                    mtime: time(st.updated_at),
                    ctime: time(st.updated_at),
                    atime: time(st.accessed_at.or(st.updated_at)),
                    perm: 0o644,
                })
            }
        }
    }

    /// Directory entries of `path`: `(name, kind)`, complete, in path order.
    pub fn readdir(&self, path: &str) -> Result<Vec<(String, Kind)>> {
        let listing = self.host.list(
            &self.caller,
            &self.address(path)?,
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
                    },
                )
            })
            .collect();
        for p in lock(&self.pending).keys() {
            if parent(p) == path && !out.iter().any(|(n, _)| n == basename(p)) {
                out.push((basename(p).to_string(), Kind::File));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    fn new_fh(&self) -> u64 {
        self.next_fh.fetch_add(1, Ordering::Relaxed)
    }

    /// Opens `path`; returns the handle and whether reads must bypass the page cache.
    pub fn open(&self, path: &str, mode: OpenMode) -> Result<(u64, bool)> {
        let fh = self.new_fh();
        if let Some(pfh) = lock(&self.pending).get(path).copied() {
            // A second open of a file still being created sees what was written so far.
            let buf = lock(&self.handles)
                .get(&pfh)
                .and_then(|h| h.buf.clone())
                .unwrap_or_default();
            lock(&self.handles).insert(
                fh,
                Handle {
                    path: path.to_string(),
                    kind: Kind::File,
                    snapshot: Some(Arc::new(buf)),
                    buf: None,
                    dirty: false,
                    written: false,
                    new: false,
                    shown: Vec::new(),
                },
            );
            return Ok((fh, true));
        }
        let virt = self.is_virtual(path)?;
        let mut h = Handle {
            path: path.to_string(),
            kind: if virt { Kind::Virtual } else { Kind::File },
            snapshot: None,
            buf: None,
            dirty: false,
            written: false,
            new: false,
            shown: Vec::new(),
        };
        let mut direct = virt;
        if virt {
            if mode.write {
                self.check_write(path)?;
                h.buf = Some(Vec::new());
            } else {
                h.snapshot = Some(Arc::new(self.generate(path)?.into_bytes()));
            }
        } else {
            let addr = self.address(path)?;
            if mode.write {
                self.check_write(path)?;
                if mode.truncate {
                    h.buf = Some(Vec::new());
                    h.dirty = true;
                } else if mode.append {
                    h.buf = Some(self.host.read(&self.caller, &addr)?.text.into_bytes());
                }
            }
            let content = self.host.read(&self.caller, &addr)?.text;
            // Content generated on each read (http, script, sqlite, wasm, …) may differ from the
            // size getattr saw, so the kernel must not trust that size: direct I/O.
            if self.host.provider_kind(path).is_some_and(|k| k != "memory") {
                direct = true;
            }
            let mut snap = Vec::new();
            if !mode.write
                && let Some((header, ids)) = self.urgent()
            {
                snap.extend_from_slice(header.as_bytes());
                h.shown = ids;
                direct = true;
            }
            snap.extend_from_slice(content.as_bytes());
            h.snapshot = Some(Arc::new(snap));
        }
        lock(&self.handles).insert(fh, h);
        Ok((fh, direct))
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

    fn generate(&self, path: &str) -> Result<String> {
        if Self::is_help(path) {
            return Ok(help(self.caller.agent()));
        }
        Ok(self.host.read(&self.caller, &self.address(path)?)?.text)
    }

    /// Reads `size` bytes at `offset` from an open handle.
    pub fn read(&self, fh: u64, offset: u64, size: usize) -> Result<Vec<u8>> {
        let (snap, shown) = {
            let mut hs = lock(&self.handles);
            let h = hs
                .get_mut(&fh)
                .ok_or_else(|| Error::invalid("unknown file handle"))?;
            let snap = match (&h.snapshot, &h.buf) {
                (Some(s), _) => s.clone(),
                (None, Some(b)) => Arc::new(b.clone()),
                (None, None) => Arc::new(Vec::new()),
            };
            (snap, std::mem::take(&mut h.shown))
        };
        if !shown.is_empty()
            && let (Some(store), Some(agent)) = (&self.store, self.caller.agent())
        {
            // Shown once: the header was read, so these messages are read now.
            store.tell_mark_read(agent, &shown)?;
            self.forget_urgent();
        }
        let start = (offset as usize).min(snap.len());
        let end = start.saturating_add(size).min(snap.len());
        Ok(snap[start..end].to_vec())
    }

    /// Writes `data` at `offset` through an open handle.
    pub fn write(&self, fh: u64, offset: u64, data: &[u8]) -> Result<usize> {
        let needs_load = {
            let hs = lock(&self.handles);
            let h = hs
                .get(&fh)
                .ok_or_else(|| Error::invalid("unknown file handle"))?;
            h.buf.is_none().then(|| h.path.clone())
        };
        let loaded = match needs_load {
            Some(p) => Some(self.host.read(&self.caller, &self.address(&p)?)?.text),
            None => None,
        };
        let mut hs = lock(&self.handles);
        let h = hs
            .get_mut(&fh)
            .ok_or_else(|| Error::invalid("unknown file handle"))?;
        let buf = h
            .buf
            .get_or_insert_with(|| loaded.map(String::into_bytes).unwrap_or_default());
        let off = offset as usize;
        if buf.len() < off {
            buf.resize(off, b' ');
        }
        let end = off + data.len();
        if buf.len() < end {
            buf.resize(end, 0);
        }
        buf[off..end].copy_from_slice(data);
        h.dirty = true;
        h.written = true;
        Ok(data.len())
    }

    /// Creates a file; nothing is stored until it is closed (one version, not two).
    pub fn create(&self, path: &str) -> Result<u64> {
        let name = basename(path);
        if name.starts_with('@') {
            return Err(Error::invalid(format!(
                "names starting with @ are shortcuts; {name} cannot be created"
            )));
        }
        let virt = self.is_virtual(path)?;
        if !virt {
            self.check_write(path)?;
        }
        let fh = self.new_fh();
        lock(&self.handles).insert(
            fh,
            Handle {
                path: path.to_string(),
                kind: if virt { Kind::Virtual } else { Kind::File },
                snapshot: None,
                buf: Some(Vec::new()),
                dirty: !virt,
                written: false,
                new: !virt,
                shown: Vec::new(),
            },
        );
        if !virt {
            lock(&self.pending).insert(path.to_string(), fh);
        }
        Ok(fh)
    }

    /// Stores what a handle wrote (at close and fsync, so errors reach the writer; a close
    /// with nothing written since stores nothing).
    pub fn flush(&self, fh: u64) -> Result<()> {
        self.store_handle(fh, false)
    }

    fn store_handle(&self, fh: u64, closing: bool) -> Result<()> {
        let job = {
            let mut hs = lock(&self.handles);
            let Some(h) = hs.get_mut(&fh) else {
                return Ok(());
            };
            if !h.dirty || (!closing && !h.written) {
                return Ok(());
            }
            h.dirty = false;
            h.written = false;
            (
                h.path.clone(),
                h.kind,
                h.buf.clone().unwrap_or_default(),
                h.new,
            )
        };
        let (path, kind, buf, new) = job;
        let text = String::from_utf8_lossy(&buf).into_owned();
        let addr = self.address(&path)?;
        let res = if kind == Kind::Virtual {
            self.host
                .write(&self.caller, &addr, WriteInput::Text(text))
                .map(drop)
        } else {
            self.host
                .write(
                    &self.caller,
                    &addr,
                    WriteInput::Put(Put {
                        content: Some(text),
                        ..Put::default()
                    }),
                )
                .map(drop)
        };
        if let Err(e) = res {
            // Keep the data so a later flush (or release) can try again.
            if let Some(h) = lock(&self.handles).get_mut(&fh) {
                h.dirty = true;
                h.written = true;
            }
            return Err(e);
        }
        if new {
            lock(&self.pending).remove(&path);
            if let Some(h) = lock(&self.handles).get_mut(&fh) {
                h.new = false;
            }
        }
        Ok(())
    }

    /// Closes a handle, storing anything not stored yet.
    pub fn release(&self, fh: u64) -> Result<()> {
        let r = self.store_handle(fh, true);
        if let Some(h) = lock(&self.handles).remove(&fh)
            && h.new
        {
            lock(&self.pending).remove(&h.path);
        }
        r
    }

    /// Truncates to `size` (through a handle when one is given).
    pub fn truncate(&self, path: &str, fh: Option<u64>, size: u64) -> Result<()> {
        if self.is_virtual(path)? {
            return Ok(());
        }
        let pending = lock(&self.pending).get(path).copied();
        let handle = fh
            .filter(|f| lock(&self.handles).contains_key(f))
            .or(pending);
        if let Some(fh) = handle {
            let loaded = {
                let hs = lock(&self.handles);
                hs.get(&fh).is_some_and(|h| h.buf.is_none())
            };
            let current = if loaded && size > 0 {
                Some(self.host.read(&self.caller, &self.address(path)?)?.text)
            } else {
                None
            };
            let mut hs = lock(&self.handles);
            if let Some(h) = hs.get_mut(&fh) {
                let buf = h
                    .buf
                    .get_or_insert_with(|| current.map(String::into_bytes).unwrap_or_default());
                buf.resize(size as usize, 0);
                h.dirty = true;
            }
            return Ok(());
        }
        let content = self.host.read(&self.caller, &self.address(path)?)?.text;
        let mut bytes = content.into_bytes();
        bytes.resize(size as usize, 0);
        self.host.write(
            &self.caller,
            &self.address(path)?,
            WriteInput::Put(Put {
                content: Some(String::from_utf8_lossy(&bytes).into_owned()),
                ..Put::default()
            }),
        )?;
        Ok(())
    }

    /// Removes a file (to the trash).
    pub fn unlink(&self, path: &str) -> Result<()> {
        if self.is_virtual(path)? {
            return Err(Error::new(
                ErrorKind::PermissionDenied,
                format!("{path} is generated and cannot be removed"),
            ));
        }
        if lock(&self.pending).remove(path).is_some() {
            return Ok(());
        }
        self.host
            .remove(&self.caller, &self.address(path)?, RemoveOptions::default())?;
        Ok(())
    }

    /// Makes a directory.
    pub fn mkdir(&self, path: &str) -> Result<()> {
        self.host.mkdir(&self.caller, path).map(drop)
    }

    /// Removes an empty directory.
    pub fn rmdir(&self, path: &str) -> Result<()> {
        self.host.rmdir(&self.caller, path).map(drop)
    }

    /// Renames a file or directory, replacing a file at the target.
    pub fn rename(&self, from: &str, to: &str) -> Result<()> {
        if self.is_virtual(from)? || self.is_virtual(to)? {
            return Err(Error::new(
                ErrorKind::PermissionDenied,
                "generated files cannot be renamed",
            ));
        }
        if let Some(fh) = lock(&self.pending).get(from).copied() {
            // Still being created: store it under its new name.
            self.flush(fh)?;
        }
        self.host
            .rename(&self.caller, &self.address(from)?, &self.address(to)?, true)?;
        let mut i = lock(&self.inodes);
        let moved: Vec<(String, u64)> = i
            .by_path
            .iter()
            .filter(|(p, _)| is_within(p, from))
            .map(|(p, n)| (p.clone(), *n))
            .collect();
        for (p, n) in moved {
            let np = format!("{to}{}", &p[from.len()..]);
            i.by_path.remove(&p);
            i.by_path.insert(np.clone(), n);
            i.by_ino.insert(n, np);
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use avm_core::Mount;
    use avm_provider_memory::MemoryProvider;

    fn core(agent: &str) -> (tempfile::TempDir, Core, Arc<Host>) {
        let dir = tempfile::tempdir().unwrap();
        let mem = MemoryProvider::open(&dir.path().join("a.db"), Default::default()).unwrap();
        let store = avm_provider_memory::services::as_memory_store(mem.store());
        let host = Arc::new(
            Host::new(vec![
                Mount::new("/**", Arc::new(mem)),
                Mount::new(
                    "/tell/**",
                    Arc::new(avm_provider_tell::TellProvider::new(store.clone())),
                ),
            ])
            .unwrap(),
        );
        let c = Core::new(host.clone(), Caller::Agent(agent.into()), Some(store));
        (dir, c, host)
    }

    #[test]
    fn a_created_file_is_stored_once_at_close_and_listed_meanwhile() {
        let (_d, c, host) = core("alice");
        let p = "/memory/private/alice/n.md";
        let fh = c.create(p).unwrap();
        assert_eq!(c.getattr(p).unwrap().kind, Kind::File);
        assert!(
            c.readdir("/memory/private/alice")
                .unwrap()
                .iter()
                .any(|(n, _)| n == "n.md")
        );
        c.flush(fh).unwrap(); // a close before any write stores nothing
        c.write(fh, 0, b"hello").unwrap();
        c.release(fh).unwrap();
        let h = host
            .read(c.caller(), "/memory/private/alice/n.md:history")
            .unwrap();
        assert_eq!(h.text.lines().count(), 1, "{}", h.text);
        assert_eq!(c.getattr(p).unwrap().size, 5);
    }

    #[test]
    fn truncating_open_replaces_content_in_one_version_and_append_appends() {
        let (_d, c, host) = core("alice");
        let p = "/memory/private/alice/t.md";
        let fh = c.create(p).unwrap();
        c.write(fh, 0, b"one\n").unwrap();
        c.release(fh).unwrap();
        let (fh, _) = c
            .open(
                p,
                OpenMode {
                    write: true,
                    truncate: true,
                    append: false,
                },
            )
            .unwrap();
        c.write(fh, 0, b"two\n").unwrap();
        c.release(fh).unwrap();
        let (fh, _) = c
            .open(
                p,
                OpenMode {
                    write: true,
                    truncate: false,
                    append: true,
                },
            )
            .unwrap();
        c.write(fh, 4, b"three\n").unwrap();
        c.release(fh).unwrap();
        assert_eq!(host.read(c.caller(), p).unwrap().text, "two\nthree\n");
        let h = host.read(c.caller(), &format!("{p}:history")).unwrap();
        assert_eq!(h.text.lines().count(), 3, "{}", h.text);
    }

    #[test]
    fn suffixes_queries_help_and_tell_are_virtual_and_not_removable() {
        let (_d, c, _h) = core("alice");
        let p = "/memory/private/alice/v.md";
        let fh = c.create(p).unwrap();
        c.write(fh, 0, b"x").unwrap();
        c.release(fh).unwrap();
        for v in [
            format!("{p}:meta"),
            "/:help".to_string(),
            "/memory:search?q=x".to_string(),
            "/tell/bob".to_string(),
        ] {
            assert_eq!(c.getattr(&v).unwrap().kind, Kind::Virtual, "{v}");
        }
        assert_eq!(
            c.unlink(&format!("{p}:meta")).unwrap_err().kind(),
            ErrorKind::PermissionDenied
        );
        let (fh, direct) = c.open("/:help", OpenMode::default()).unwrap();
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
        let (fh, _) = c
            .open(&format!("/memory/{short}"), OpenMode::default())
            .unwrap();
        assert_eq!(c.read(fh, 0, 100).unwrap(), b"shared");
        let e = c.getattr("/memory/private/bob/x.md").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PermissionDenied);
        assert_eq!(crate::fs::errno(e.kind()), fuser::Errno::EACCES);
        assert!(c.create("/memory/private/bob/y.md").is_err());
        assert!(c.create("/memory/shared/@bad").is_err());
    }
}
