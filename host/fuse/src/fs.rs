//! The thin fuser layer: kernel requests in, [`Core`] calls, replies out.

use std::ffi::OsStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow,
    WriteFlags,
};

use avm_core::ErrorKind;

use crate::core::{Attr, Core, Kind, OpenMode};

/// File attributes are never cached by the kernel: other processes write the same store, and
/// their writes must show through the mount at once (content is read fresh at every open).
const TTL: Duration = Duration::ZERO;

/// Names (dentries) of stored files and directories, and directory attributes, are cached
/// for a second: resolving `memory/private/alice/x.md` would otherwise ask the store about
/// every directory on the way, on every open. A name removed by another process then fails
/// at open with ENOENT; a directory removed elsewhere may still be listed for up to a second.
const NAME_TTL: Duration = Duration::from_secs(1);

/// `(attribute TTL, entry TTL)` for a reply.
fn ttls(a: &Attr) -> (Duration, Duration) {
    match a.kind {
        Kind::Dir => (NAME_TTL, NAME_TTL),
        Kind::File => (TTL, NAME_TTL),
        Kind::Virtual => (TTL, TTL),
    }
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
        ErrorKind::Unsupported => Errno::ENOSYS,
        ErrorKind::TooLarge => Errno::EFBIG,
        ErrorKind::Busy => Errno::EBUSY,
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
    /// Serves `core`, files owned by the mounting user.
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
                _ => FileType::RegularFile,
            },
            perm: a.perm,
            nlink: if a.kind == Kind::Dir { 2 } else { 1 },
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }

    fn path(&self, ino: INodeNo) -> Result<String, Errno> {
        self.core.path_of(ino.0).map_err(|e| errno(e.kind()))
    }

    fn child(&self, parent: INodeNo, name: &OsStr) -> Result<String, Errno> {
        let name = name.to_str().ok_or(Errno::EINVAL)?;
        self.core.child(parent.0, name).map_err(|e| errno(e.kind()))
    }
}

fn mode(flags: OpenFlags) -> OpenMode {
    let raw = flags.0;
    let acc = raw & libc_o_accmode();
    OpenMode {
        write: acc != 0,
        truncate: raw & O_TRUNC != 0,
        append: raw & O_APPEND != 0,
    }
}

const O_TRUNC: i32 = 0o1000;
const O_APPEND: i32 = 0o2000;

fn libc_o_accmode() -> i32 {
    0o3
}

impl Filesystem for AvmFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // O_TRUNC arrives with open, so `echo x > f` stores one version, not an empty one first.
        let _ = config.add_capabilities(fuser::InitFlags::FUSE_ATOMIC_O_TRUNC);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self
            .child(parent, name)
            .and_then(|p| self.core.getattr(&p).map_err(|e| errno(e.kind())))
        {
            Ok(a) => {
                let (at, et) = ttls(&a);
                reply.entry_with_ttls(&at, &et, &self.attr(&a), Generation(0))
            }
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self
            .path(ino)
            .and_then(|p| self.core.getattr(&p).map_err(|e| errno(e.kind())))
        {
            Ok(a) => reply.attr(&ttls(&a).0, &self.attr(&a)),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let r = self.path(ino).and_then(|p| {
            if let Some(n) = size {
                self.core
                    .truncate(&p, fh.map(|f| f.0), n)
                    .map_err(|e| errno(e.kind()))?;
            }
            // Times, modes and owners are accepted and not stored (touch, cp -p work).
            self.core.getattr(&p).map_err(|e| errno(e.kind()))
        });
        match r {
            Ok(a) => reply.attr(&TTL, &self.attr(&a)),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let r = self.child(parent, name).and_then(|p| {
            self.core.mkdir(&p).map_err(|e| errno(e.kind()))?;
            self.core.getattr(&p).map_err(|e| errno(e.kind()))
        });
        match r {
            Ok(a) => reply.entry(&TTL, &self.attr(&a), Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self
            .child(parent, name)
            .and_then(|p| self.core.unlink(&p).map_err(|e| errno(e.kind())))
        {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self
            .child(parent, name)
            .and_then(|p| self.core.rmdir(&p).map_err(|e| errno(e.kind())))
        {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        _flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let r = self.child(parent, name).and_then(|from| {
            let to = self.child(newparent, newname)?;
            self.core.rename(&from, &to).map_err(|e| errno(e.kind()))
        });
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        match self
            .path(ino)
            .and_then(|p| self.core.open(&p, mode(flags)).map_err(|e| errno(e.kind())))
        {
            Ok((fh, direct)) => reply.opened(
                FileHandle(fh),
                if direct {
                    FopenFlags::FOPEN_DIRECT_IO
                } else {
                    FopenFlags::empty()
                },
            ),
            Err(e) => reply.error(e),
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
        match self.core.read(fh.0, offset, size as usize) {
            Ok(d) => reply.data(&d),
            Err(e) => reply.error(errno(e.kind())),
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
        match self.core.write(fh.0, offset, data) {
            Ok(n) => reply.written(n as u32),
            Err(e) => reply.error(errno(e.kind())),
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
        match self.core.flush(fh.0) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e.kind())),
        }
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
        match self.core.release(fh.0) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e.kind())),
        }
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        match self.core.flush(fh.0) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e.kind())),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let path = match self.path(ino) {
            Ok(p) => p,
            Err(e) => return reply.error(e),
        };
        let entries = match self.core.readdir(&path) {
            Ok(e) => e,
            Err(e) => return reply.error(errno(e.kind())),
        };
        let mut all: Vec<(u64, FileType, String)> = vec![
            (ino.0, FileType::Directory, ".".into()),
            (ino.0, FileType::Directory, "..".into()),
        ];
        for (name, kind) in entries {
            let child = avm_core::address::join(&path, &name);
            let ino = self.core.ino(&child);
            all.push((
                ino,
                if kind == Kind::Dir {
                    FileType::Directory
                } else {
                    FileType::RegularFile
                },
                name,
            ));
        }
        for (i, (ino, kind, name)) in all.into_iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(ino), (i + 1) as u64, kind, &name) {
                break;
            }
        }
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        reply.statfs(1 << 30, 1 << 29, 1 << 29, 1 << 24, 1 << 23, 4096, 255, 4096);
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let r = self.child(parent, name).and_then(|p| {
            let fh = self.core.create(&p).map_err(|e| errno(e.kind()))?;
            let a = self.core.getattr(&p).map_err(|e| errno(e.kind()));
            match a {
                Ok(a) => Ok((fh, a)),
                Err(e) => {
                    let _ = self.core.release(fh);
                    Err(e)
                }
            }
        });
        match r {
            Ok((fh, a)) => reply.created(
                &TTL,
                &self.attr(&a),
                Generation(0),
                FileHandle(fh),
                FopenFlags::empty(),
            ),
            Err(e) => reply.error(e),
        }
    }
}
