//! The provider: paths below the mount map to indexes and their files.
//!
//! `/index` lists the indexes, `/index/<name>` is an index (a directory of its tracked files;
//! read, a summary), `/index/<name>/<rel path>` a tracked file (read, its signatures as
//! Markdown). Suffixes on an index give its status, signatures, file list and JSON summary,
//! rescan it (`:scan`) and set its description (`:describe`); nothing else is writable.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use serde::Deserialize;

use avm_core::router::Pattern;
use avm_core::time::now_micros;
use avm_core::{Error, ErrorKind, Result};

use crate::scan::{self, ScanProgress, ScanReport, Status};
use crate::store::Store;
use crate::walk::{GitIgnore, walk};

mod helpers;
mod ops;
mod read;

use helpers::{require, validate_name, within};

/// Default of [`IndexOptions::max_file_bytes`]: 1 MiB.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 1 << 20;

/// Options of an `index` mount.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IndexOptions {
    /// The SQLite file holding the index state (`~` and `${VAR}` are expanded; its directory
    /// is created). The CLI passes `<data dir>/index.db`; `None` keeps the state in memory,
    /// for the life of the provider.
    pub db: Option<String>,
    /// Files larger than this many bytes are tracked by hash but not parsed for signatures.
    pub max_file_bytes: u64,
}

impl Default for IndexOptions {
    fn default() -> Self {
        IndexOptions {
            db: None,
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
        }
    }
}

/// Serves indexes of project trees: files tracked with hashes and change status, and the
/// code signatures extracted from them.
pub struct IndexProvider {
    /// The mount's literal prefix (`/index`); the rest of a path is `<name>[/<rel path>]`.
    prefix: String,
    /// Opened on first use, so mounting `/index` (every CLI command does) costs nothing.
    store: OnceLock<Mutex<Store>>,
    db: Option<PathBuf>,
    /// Scans of this provider run one at a time, so two never interleave their plans.
    scan_lock: Mutex<()>,
    max_file_bytes: u64,
}

/// What a request path names.
enum Target {
    /// The mount root: the list of indexes.
    Root,
    /// An index.
    Index(String),
    /// A path inside an index.
    Node(String, String),
}

impl IndexProvider {
    /// Builds the provider mounted at `pattern` (e.g. `/index/**`).
    pub fn new(pattern: &str, opts: IndexOptions) -> Result<Self> {
        let prefix = Pattern::parse(pattern)?.literal_prefix();
        if opts.max_file_bytes == 0 {
            return Err(Error::invalid(
                "index option max_file_bytes is 0; give a positive size in bytes (default 1048576)",
            ));
        }
        let db = match &opts.db {
            Some(raw) => Some(PathBuf::from(avm_core::config::expand(raw)?)),
            None => None,
        };
        Ok(IndexProvider {
            prefix,
            store: OnceLock::new(),
            db,
            scan_lock: Mutex::new(()),
            max_file_bytes: opts.max_file_bytes,
        })
    }

    fn store(&self) -> Result<MutexGuard<'_, Store>> {
        if self.store.get().is_none() {
            // Two first callers may both open; the loser's connection is dropped unused.
            let _ = self.store.set(Mutex::new(Store::open(self.db.as_deref())?));
        }
        let m = self
            .store
            .get()
            .ok_or_else(|| Error::internal("index store not open"))?;
        // Every write is one SQLite transaction, so a panic elsewhere cannot leave the store
        // half-changed; carrying on past a poisoned lock is safe.
        Ok(m.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Scans `dir` (an absolute directory) into the index `name`, creating it or updating it:
    /// new files are added, changed ones re-extracted, vanished ones dropped. Files whose size
    /// and modification time are as recorded are not read again. `progress` is called after
    /// the walk and after every file read.
    pub fn scan(
        &self,
        name: &str,
        dir: &Path,
        progress: &mut dyn FnMut(ScanProgress),
    ) -> Result<ScanReport> {
        let started = Instant::now();
        validate_name(name)?;
        if !dir.is_absolute() {
            return Err(Error::invalid(format!(
                "scan needs an absolute directory, got {:?}; give a path such as /home/me/project",
                dir.display().to_string()
            )));
        }
        let root = std::fs::canonicalize(dir).map_err(|e| {
            Error::new(
                ErrorKind::NotFound,
                format!("cannot scan {}: {e}", dir.display()),
            )
        })?;
        if root.parent().is_none() {
            return Err(Error::invalid(
                "scanning / would index the whole filesystem; give a project directory",
            ));
        }
        if !root.is_dir() {
            return Err(Error::new(
                ErrorKind::NotADirectory,
                format!("cannot scan {}: it is not a directory", root.display()),
            ));
        }
        let root_str = root
            .to_str()
            .ok_or_else(|| {
                Error::invalid(format!(
                    "cannot scan {}: the path is not valid UTF-8",
                    root.display()
                ))
            })?
            .to_string();
        let _one_at_a_time = self.scan_lock.lock().unwrap_or_else(|p| p.into_inner());
        let (same_root, known) = {
            let store = self.store()?;
            // Hashes recorded under another root say nothing about this tree's files, so a
            // re-rooted index reads every file again.
            let same_root = store.index(name)?.is_some_and(|row| row.root == root_str);
            let known = store.known(name)?;
            (same_root, known)
        };
        let files = walk(&root, "", &GitIgnore::load(&root));
        let plan = scan::plan(files, &known, same_root, self.max_file_bytes, progress);
        let mut store = self.store()?;
        store.apply_scan(name, &root_str, now_micros(), &plan.changes)?;
        let (files, with_signatures, signatures) = store.totals(name)?;
        Ok(ScanReport {
            name: name.to_string(),
            root,
            files,
            added: plan.added,
            changed: plan.changed,
            removed: plan.removed,
            unchanged: plan.unchanged,
            hashed: plan.hashed,
            with_signatures,
            signatures,
            skipped: plan.skipped,
            elapsed: started.elapsed(),
        })
    }

    /// Compares the tree of index `name` on disk with the index (the whole tree).
    pub fn status(&self, name: &str) -> Result<Status> {
        self.status_below(name, "")
    }

    fn status_below(&self, name: &str, sub: &str) -> Result<Status> {
        let (row, mut known) = {
            let store = self.store()?;
            (require(store.index(name)?, name)?, store.known(name)?)
        };
        if !sub.is_empty() {
            known.retain(|p, _| p == sub || within(p, sub));
        }
        let root = PathBuf::from(&row.root);
        let exists = root.is_dir();
        let files = walk(&root, sub, &GitIgnore::load(&root));
        Ok(scan::status(files, &known, exists))
    }

    fn target(&self, path: &str) -> Result<Target> {
        let rest = if self.prefix == "/" {
            Some(path.trim_start_matches('/'))
        } else if path == self.prefix {
            Some("")
        } else {
            path.strip_prefix(&self.prefix)
                .and_then(|r| r.strip_prefix('/'))
        };
        let Some(rest) = rest else {
            return Err(Error::not_found(path));
        };
        if rest.is_empty() {
            return Ok(Target::Root);
        }
        Ok(match rest.split_once('/') {
            None => Target::Index(rest.to_string()),
            Some((name, rel)) => Target::Node(name.to_string(), rel.to_string()),
        })
    }

    fn index_path(&self, name: &str) -> String {
        avm_core::address::join(&self.prefix, name)
    }
}
