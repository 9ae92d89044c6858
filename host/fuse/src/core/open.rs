//! Opening and closing: `open` (shared open files, snapshots, virtual writes), `create`, and
//! `release`, which stores what is left and lets the open file go with its last handle.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use avm_core::{Action, Error, ErrorKind, NodeKind, Result};

use super::generated::is_copier;
use super::{Attr, Core, Data, FileState, HandleKind, OpenMode, Owner, lock, urgent_fits};

impl Core {
    pub(super) fn new_fh(&self) -> u64 {
        self.next_fh.fetch_add(1, Ordering::Relaxed)
    }

    pub(super) fn check_write(&self, path: &str) -> Result<()> {
        let addr = self.host.parse(&self.caller, &self.address(path)?)?;
        self.host
            .policy()
            .check(&self.caller, &addr.path, Action::Write)?;
        if addr.suffix.is_none() {
            self.host.check_writable(&addr.path)?;
        }
        Ok(())
    }

    /// The stored content of `path`, exactly.
    pub(super) fn load(&self, path: &str) -> Result<Vec<u8>> {
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
}
