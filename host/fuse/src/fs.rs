//! The thin fuser layer: kernel requests in, [`Core`] calls, replies out.
//!
//! Operations avm does not offer answer with a definite errno, never `ENOSYS` (which would make
//! the kernel turn the operation off for the whole mount): hard links and device nodes are
//! `EPERM`, `RENAME_WHITEOUT` and unusual `fallocate` modes `EOPNOTSUPP`. Extended attributes
//! and byte-range locks are left to the kernel's defaults (`EOPNOTSUPP` for xattrs, locks kept
//! by the kernel for this machine).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use nix::fcntl::OFlag;
use nix::sys::stat::SFlag;

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow,
    WriteFlags,
};

use avm_core::{ErrorKind, Rename};

use crate::core::{Attr, AttrChange, Core, Kind, OpenMode, Owner};

/// File attributes are never cached by the kernel: other processes write the same store, and
/// their writes must show through the mount at once (content is read fresh at every open).
const TTL: Duration = Duration::ZERO;

/// Names (dentries) of stored files and directories, and directory attributes, are cached
/// for a second: resolving `memory/private/alice/x.md` would otherwise ask the store about
/// every directory on the way, on every open. A name removed by another process then fails
/// at open with ENOENT; a directory removed elsewhere may still be listed for up to a second.
const NAME_TTL: Duration = Duration::from_secs(1);

/// The longest name a directory entry may have.
const NAME_MAX: usize = 255;

/// `(attribute TTL, entry TTL)` for a reply.
fn ttls(a: &Attr) -> (Duration, Duration) {
    match a.kind {
        Kind::Dir => (NAME_TTL, NAME_TTL),
        Kind::File | Kind::Symlink => (TTL, NAME_TTL),
        Kind::Virtual => (TTL, TTL),
    }
}

/// An operation's error as the kernel gets it, logged (at debug, inside the operation's span)
/// with the message the errno cannot carry.
fn failed(e: &avm_core::Error) -> Errno {
    tracing::debug!(error = %e, "failed");
    errno(e.kind())
}

/// The one place avm errors become errno values for the kernel.
pub fn errno(kind: ErrorKind) -> Errno {
    match kind {
        ErrorKind::NotFound => Errno::ENOENT,
        ErrorKind::NotADirectory => Errno::ENOTDIR,
        ErrorKind::IsADirectory => Errno::EISDIR,
        ErrorKind::AlreadyExists => Errno::EEXIST,
        ErrorKind::NotEmpty => Errno::ENOTEMPTY,
        ErrorKind::PermissionDenied => Errno::EACCES,
        ErrorKind::ReadOnly => Errno::EROFS,
        ErrorKind::InvalidInput => Errno::EINVAL,
        ErrorKind::Unsupported => Errno::EOPNOTSUPP,
        ErrorKind::TooLarge => Errno::EFBIG,
        ErrorKind::Busy => Errno::EAGAIN,
        ErrorKind::StorageFull => Errno::ENOSPC,
        ErrorKind::TimedOut => Errno::ETIMEDOUT,
        ErrorKind::Unavailable => Errno::EIO,
        ErrorKind::Internal => Errno::EIO,
    }
}

/// The fuser filesystem over a [`Core`].
pub struct AvmFs {
    core: Arc<Core>,
    uid: u32,
    gid: u32,
}

impl AvmFs {
    /// Serves `core`, files owned by the mounting user unless stored otherwise.
    pub fn new(core: Arc<Core>) -> Self {
        AvmFs {
            core,
            uid: nix::unistd::getuid().as_raw(),
            gid: nix::unistd::getgid().as_raw(),
        }
    }

    fn attr(&self, a: &Attr) -> FileAttr {
        FileAttr {
            ino: INodeNo(a.ino),
            size: a.size,
            blocks: a.size.div_ceil(512),
            atime: a.atime,
            mtime: a.mtime,
            ctime: a.ctime,
            crtime: a.ctime,
            kind: match a.kind {
                Kind::Dir => FileType::Directory,
                Kind::Symlink => FileType::Symlink,
                _ => FileType::RegularFile,
            },
            perm: a.perm,
            nlink: a.nlink,
            uid: a.uid.unwrap_or(self.uid),
            gid: a.gid.unwrap_or(self.gid),
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }

    fn entry(&self, reply: ReplyEntry, r: avm_core::Result<Attr>) {
        match r {
            Ok(a) => {
                let (at, et) = ttls(&a);
                reply.entry_with_ttls(&at, &et, &self.attr(&a), Generation(0))
            }
            Err(e) => reply.error(failed(&e)),
        }
    }
}

/// A name from the kernel as avm takes it: UTF-8, at most 255 bytes.
fn name(n: &OsStr) -> Result<&str, Errno> {
    if n.len() > NAME_MAX {
        return Err(Errno::ENAMETOOLONG);
    }
    n.to_str().ok_or(Errno::EINVAL)
}

fn mode(flags: i32) -> OpenMode {
    let has = |f: OFlag| flags & f.bits() != 0;
    OpenMode {
        write: has(OFlag::O_ACCMODE),
        truncate: has(OFlag::O_TRUNC),
        append: has(OFlag::O_APPEND),
        exclusive: has(OFlag::O_EXCL),
        reader: None,
    }
}

const S_IFMT: u32 = SFlag::S_IFMT.bits();
const S_IFREG: u32 = SFlag::S_IFREG.bits();

/// Direct I/O (no page cache) for content generated at open and for appends, which must land
/// at the end as this core sees it.
fn open_flags(direct: bool) -> FopenFlags {
    if direct {
        FopenFlags::FOPEN_DIRECT_IO
    } else {
        FopenFlags::empty()
    }
}

fn time(t: TimeOrNow) -> SystemTime {
    match t {
        TimeOrNow::SpecificTime(t) => t,
        TimeOrNow::Now => SystemTime::now(),
    }
}

fn owner(req: &Request) -> Owner {
    Owner {
        uid: req.uid(),
        gid: req.gid(),
    }
}

fn empty(reply: ReplyEmpty, r: avm_core::Result<()>) {
    match r {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(failed(&e)),
    }
}

impl Filesystem for AvmFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // O_TRUNC arrives with open, so `echo x > f` stores one version, not an empty one first.
        let _ = config.add_capabilities(fuser::InitFlags::FUSE_ATOMIC_O_TRUNC);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, n: &OsStr, reply: ReplyEntry) {
        let _op = tracing::debug_span!("fuse", op = "lookup", ino = parent.0).entered();
        match name(n) {
            Ok(n) => self.entry(reply, self.core.lookup(parent.0, n)),
            Err(e) => reply.error(e),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        let _op = tracing::debug_span!("fuse", op = "forget", ino = ino.0).entered();
        self.core.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let _op = tracing::debug_span!("fuse", op = "getattr", ino = ino.0).entered();
        match self.core.getattr(ino.0) {
            Ok(a) => reply.attr(&ttls(&a).0, &self.attr(&a)),
            Err(e) => reply.error(failed(&e)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let _op = tracing::debug_span!("fuse", op = "setattr", ino = ino.0).entered();
        // The kernel (default_permissions) has checked who may change what.
        let ch = AttrChange {
            mode,
            uid,
            gid,
            size,
            atime: atime.map(time),
            mtime: mtime.map(time),
        };
        match self.core.setattr(ino.0, fh.map(|f| f.0), ch) {
            Ok(a) => reply.attr(&TTL, &self.attr(&a)),
            Err(e) => reply.error(failed(&e)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let _op = tracing::debug_span!("fuse", op = "readlink", ino = ino.0).entered();
        match self.core.readlink(ino.0) {
            Ok(t) => reply.data(&t),
            Err(e) => reply.error(failed(&e)),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        n: &OsStr,
        mode: u32,
        umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        let _op = tracing::debug_span!("fuse", op = "mknod", ino = parent.0).entered();
        // Regular files only: FIFOs, sockets and device nodes have no place in a store.
        if mode & S_IFMT != S_IFREG && mode & S_IFMT != 0 {
            return reply.error(Errno::EPERM);
        }
        let n = match name(n) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        let r = self
            .core
            .create(
                parent.0,
                n,
                mode & !umask,
                OpenMode {
                    write: true,
                    exclusive: true,
                    ..OpenMode::default()
                },
                owner(req),
            )
            .and_then(|(a, fh)| {
                self.core.release(fh)?;
                Ok(a)
            });
        self.entry(reply, r);
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        n: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let _op = tracing::debug_span!("fuse", op = "mkdir", ino = parent.0).entered();
        match name(n) {
            Ok(n) => self.entry(
                reply,
                self.core.mkdir(parent.0, n, mode & !umask, owner(req)),
            ),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, n: &OsStr, reply: ReplyEmpty) {
        let _op = tracing::debug_span!("fuse", op = "unlink", ino = parent.0).entered();
        match name(n) {
            Ok(n) => empty(reply, self.core.unlink(parent.0, n)),
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, n: &OsStr, reply: ReplyEmpty) {
        let _op = tracing::debug_span!("fuse", op = "rmdir", ino = parent.0).entered();
        match name(n) {
            Ok(n) => empty(reply, self.core.rmdir(parent.0, n)),
            Err(e) => reply.error(e),
        }
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let _op = tracing::debug_span!("fuse", op = "symlink", ino = parent.0).entered();
        let n = match name(link_name) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        let Some(target) = target.to_str() else {
            return reply.error(Errno::EINVAL);
        };
        self.entry(reply, self.core.symlink(parent.0, n, target, owner(req)));
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        n: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let _op = tracing::debug_span!("fuse", op = "rename", ino = parent.0).entered();
        let how = if flags.contains(RenameFlags::RENAME_WHITEOUT) {
            return reply.error(Errno::EOPNOTSUPP);
        } else if flags.contains(RenameFlags::RENAME_EXCHANGE) {
            Rename::Exchange
        } else if flags.contains(RenameFlags::RENAME_NOREPLACE) {
            Rename::NoReplace
        } else {
            Rename::Replace
        };
        let (a, b) = match (name(n), name(newname)) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(e), _) | (_, Err(e)) => return reply.error(e),
        };
        empty(reply, self.core.rename(parent.0, a, newparent.0, b, how));
    }

    fn link(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _newparent: INodeNo,
        _newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let _op = tracing::debug_span!("fuse", op = "link").entered();
        // A node has one path; hard links are refused (as on filesystems without them).
        reply.error(Errno::EPERM);
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let _op = tracing::debug_span!("fuse", op = "open", ino = ino.0).entered();
        let mode = OpenMode {
            reader: Some(req.pid()),
            ..mode(flags.0)
        };
        match self.core.open(ino.0, mode) {
            Ok((fh, direct)) => reply.opened(FileHandle(fh), open_flags(direct)),
            Err(e) => reply.error(failed(&e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let _op = tracing::debug_span!("fuse", op = "read").entered();
        match self.core.read(fh.0, offset, size as usize) {
            Ok(d) => reply.data(&d),
            Err(e) => reply.error(failed(&e)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let _op = tracing::debug_span!("fuse", op = "write").entered();
        match self.core.write(fh.0, offset, data) {
            Ok(n) => reply.written(u32::try_from(n).unwrap_or(u32::MAX)),
            Err(e) => reply.error(failed(&e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        let _op = tracing::debug_span!("fuse", op = "flush").entered();
        empty(reply, self.core.flush(fh.0));
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let _op = tracing::debug_span!("fuse", op = "release").entered();
        empty(reply, self.core.release(fh.0));
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let _op = tracing::debug_span!("fuse", op = "fsync").entered();
        empty(reply, self.core.fsync(fh.0));
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let _op = tracing::debug_span!("fuse", op = "opendir", ino = ino.0).entered();
        match self.core.opendir(ino.0) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(failed(&e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let _op = tracing::debug_span!("fuse", op = "readdir", ino = ino.0).entered();
        let entries = match self.core.dir_listing(fh.0) {
            Some(l) => l,
            None => match self.core.readdir(ino.0) {
                Ok(l) => Arc::new(l),
                Err(e) => return reply.error(failed(&e)),
            },
        };
        let dots = [
            (ino.0, FileType::Directory, "."),
            (ino.0, FileType::Directory, ".."),
        ];
        let all = dots
            .iter()
            .map(|(i, k, n)| (*i, *k, OsStr::new(*n)))
            .chain(entries.iter().map(|(n, kind, i)| {
                (
                    *i,
                    match kind {
                        Kind::Dir => FileType::Directory,
                        Kind::Symlink => FileType::Symlink,
                        _ => FileType::RegularFile,
                    },
                    OsStr::from_bytes(n.as_bytes()),
                )
            }));
        for (i, (ino, kind, name)) in all.enumerate().skip(offset as usize) {
            if reply.add(INodeNo(ino), (i + 1) as u64, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        let _op = tracing::debug_span!("fuse", op = "releasedir").entered();
        self.core.releasedir(fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let _op = tracing::debug_span!("fuse", op = "fsyncdir").entered();
        // Every directory change is committed before its reply.
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let _op = tracing::debug_span!("fuse", op = "statfs").entered();
        const BSIZE: u64 = 4096;
        let (total, free) = self.core.statfs().unwrap_or((1 << 42, 1 << 41));
        reply.statfs(
            total / BSIZE,
            free / BSIZE,
            free / BSIZE,
            1 << 32,
            1 << 31,
            BSIZE as u32,
            NAME_MAX as u32,
            BSIZE as u32,
        );
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        n: &OsStr,
        mode_bits: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let _op = tracing::debug_span!("fuse", op = "create", ino = parent.0).entered();
        let n = match name(n) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        let mut m = mode(flags);
        m.write = true;
        match self
            .core
            .create(parent.0, n, mode_bits & !umask, m, owner(req))
        {
            // A file made here is known to nobody else yet: its attributes may be cached
            // like a name's (the kernel checks them for the open that follows, and for the
            // first write, with default_permissions).
            Ok((a, fh)) => reply.created(
                &if a.kind == Kind::File { NAME_TTL } else { TTL },
                &self.attr(&a),
                Generation(0),
                FileHandle(fh),
                open_flags(a.kind == Kind::Virtual || m.append),
            ),
            Err(e) => reply.error(failed(&e)),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let _op = tracing::debug_span!("fuse", op = "fallocate").entered();
        empty(reply, self.core.fallocate(fh.0, offset, length, mode));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_kind_has_a_definite_errno_and_none_is_enosys() {
        for k in ErrorKind::ALL {
            assert_ne!(errno(k), Errno::ENOSYS, "{k}");
        }
        assert_eq!(errno(ErrorKind::Unsupported), Errno::EOPNOTSUPP);
        assert_eq!(errno(ErrorKind::StorageFull), Errno::ENOSPC);
        assert_eq!(errno(ErrorKind::Busy), Errno::EAGAIN);
    }

    #[test]
    fn names_over_255_bytes_are_too_long() {
        let long = "x".repeat(256);
        assert_eq!(name(OsStr::new(&long)), Err(Errno::ENAMETOOLONG));
        assert_eq!(name(OsStr::new(&long[..255])), Ok(&long[..255]));
    }
}
