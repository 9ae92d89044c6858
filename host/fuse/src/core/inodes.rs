//! The inode table: the numbers the kernel knows, their paths and lifetimes, and how they
//! follow a name that goes (unlink) or moves (rename).

use std::sync::Arc;

use avm_core::address::{is_within, join};
use avm_core::{Error, ErrorKind, Result};

use super::{Attr, Core, FileState, Inode, Inodes, ROOT, lock};

impl Core {
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
    pub(super) fn remember(&self, path: &str) -> u64 {
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
    pub(super) fn maybe_drop(&self, ino: u64) {
        let mut i = lock(&self.inodes);
        let gone = i
            .by_ino
            .get(&ino)
            .is_some_and(|e| e.lookups == 0 && !lock(&self.files).contains_key(&ino));
        if gone {
            Self::drop_inode(&mut i, ino);
        }
    }

    /// The open file of `ino`, if any.
    pub(super) fn file(&self, ino: u64) -> Option<Arc<FileState>> {
        lock(&self.files).get(&ino).cloned()
    }

    /// Marks the inode at `path` (if any) and its open file as gone; `last` is what it was.
    pub(super) fn mark_unlinked(&self, path: &str, last: Option<Attr>) {
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

    /// Re-points every inode and open file at or below `from` to the same place below `to`.
    pub(super) fn move_paths(&self, from: &str, to: &str) {
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
    pub(super) fn swap_paths(&self, a: &str, b: &str) {
        let tmp = "\u{1}swap";
        self.move_paths(a, tmp);
        self.move_paths(b, a);
        self.move_paths(tmp, b);
    }
}
