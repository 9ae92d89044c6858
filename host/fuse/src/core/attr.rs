//! Attributes: times as nanoseconds, a stored node's attributes, an open file's overlay on
//! them, `getattr`, `lookup` and `setattr`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use avm_core::address::basename;
use avm_core::time::Nanos;
use avm_core::{Content, Error, ErrorKind, NodeKind, Put, Result, SetAttrs, Stat, WriteInput};

use super::{Attr, AttrChange, Core, FileState, HandleKind, Kind, lock};

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

impl Core {
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

    pub(super) fn attr_of(&self, ino: u64, st: &Stat) -> Attr {
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
}
