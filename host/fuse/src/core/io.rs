//! Reading and writing through handles: `read`, `write`, `fallocate`, the size and space
//! checks, and storing a changed file (`flush`, `fsync`) or a virtual write as one version.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use avm_core::{Content, Error, ErrorKind, Put, Result, SetAttrs, WriteInput};

use super::{Attr, Core, FileState, HandleKind, lock, shared, to_nanos};

impl Core {
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
    pub(super) fn check_space(&self, new_len: u64) -> Result<()> {
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

    pub(super) fn too_large(&self, len: u64) -> Error {
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
    pub(super) fn store_file(&self, f: &FileState) -> Result<()> {
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

    pub(super) fn store_handle(&self, fh: u64, always: bool) -> Result<()> {
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
