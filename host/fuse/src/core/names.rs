//! Directories and names: listings for `readdir`, `mkdir`, symbolic links, and the operations
//! that remove or move a name (`unlink`, `rmdir`, `rename`).

use std::sync::Arc;

use avm_core::address::{basename, is_within, join, parent};
use avm_core::{Error, ErrorKind, ListOptions, NodeKind, RemoveOptions, Rename, Result, SetAttrs};

use super::{Attr, Core, DirListing, FileState, Kind, Owner, exclusive, lock};

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
}
