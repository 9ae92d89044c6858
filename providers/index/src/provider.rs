//! The provider: paths below the mount map to indexes and their files.
//!
//! `/index` lists the indexes, `/index/<name>` is an index (a directory of its tracked files;
//! read, a summary), `/index/<name>/<rel path>` a tracked file (read, its signatures as
//! Markdown). Suffixes on an index give its status, signatures, file list and JSON summary,
//! rescan it (`:scan`) and set its description (`:describe`); nothing else is writable.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use serde::Deserialize;
use serde_json::{Value, json};

use avm_core::router::Pattern;
use avm_core::time::{now_micros, to_iso, to_second};
use avm_core::{
    Entry, Error, ErrorKind, ListOptions, Listing, NodeKind, Ops, Output, Provider, ProviderInfo,
    Request, Result, Stat, SuffixOn, SuffixSpec, WriteInput,
};

use crate::lang::{Signature, is_parsed, language_from_query};
use crate::scan::{self, ScanProgress, ScanReport, Status};
use crate::store::{FileRow, IndexRow, Store};
use crate::walk::{GitIgnore, walk};

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

    fn list_indexes(&self) -> Result<Output> {
        let rows = self.store()?.indexes()?;
        if rows.is_empty() {
            return Ok(Output::new(
                "No indexes yet; create one with: avm index scan NAME DIR\n",
                json!([]),
            ));
        }
        let mut text = String::new();
        let mut data = Vec::new();
        for (row, files) in &rows {
            text.push_str(&format!(
                "{}  {}  {} files  scanned {}\n",
                row.name,
                row.root,
                files,
                to_second(row.scanned_at)
            ));
            data.push(json!({
                "name": row.name,
                "root": row.root,
                "description": row.description,
                "files": files,
                "scanned_at": to_iso(row.scanned_at),
            }));
        }
        Ok(Output::new(text, Value::Array(data)))
    }

    fn summary_json(&self, row: &IndexRow, files: &[FileRow]) -> Value {
        let mut languages: BTreeMap<&str, u64> = BTreeMap::new();
        for f in files {
            *languages.entry(f.language.as_str()).or_default() += 1;
        }
        let with = files.iter().filter(|f| f.sig_count > 0).count();
        let sigs: u64 = files.iter().map(|f| f.sig_count).sum();
        let bytes: u64 = files.iter().map(|f| f.size).sum();
        json!({
            "name": row.name,
            "path": self.index_path(&row.name),
            "root": row.root,
            "description": row.description,
            "created_at": to_iso(row.created_at),
            "scanned_at": to_iso(row.scanned_at),
            "files": files.len(),
            "with_signatures": with,
            "signatures": sigs,
            "bytes": bytes,
            "languages": languages,
        })
    }

    fn summary(&self, name: &str) -> Result<Output> {
        let (row, files) = self.index_and_files(name, false)?;
        let data = self.summary_json(&row, &files);
        let mut text = format!("# {}\n\nRoot: {}\n", row.name, row.root);
        if !row.description.is_empty() {
            text.push_str(&format!("Description: {}\n", row.description));
        }
        text.push_str(&format!(
            "Last scan: {} UTC\nFiles: {} ({} with signatures, {} signatures)\n",
            to_second(row.scanned_at),
            files.len(),
            data["with_signatures"],
            data["signatures"],
        ));
        if let Some(langs) = data["languages"].as_object()
            && !langs.is_empty()
        {
            text.push_str("\n## Languages\n\n");
            let mut by_count: Vec<(&String, u64)> = langs
                .iter()
                .map(|(k, v)| (k, v.as_u64().unwrap_or(0)))
                .collect();
            by_count.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
            for (lang, n) in by_count {
                text.push_str(&format!("- {lang}: {n}\n"));
            }
        }
        Ok(Output::new(text, data))
    }

    fn index_and_files(&self, name: &str, sigs: bool) -> Result<(IndexRow, Vec<FileRow>)> {
        let store = self.store()?;
        let row = require(store.index(name)?, name)?;
        let files = store.files(name, sigs)?;
        Ok((row, files))
    }

    /// The tracked files at or below `rel` (`""` = all); NotFound when there are none.
    fn files_below(&self, name: &str, rel: &str, path: &str, sigs: bool) -> Result<Vec<FileRow>> {
        let (_, mut files) = self.index_and_files(name, sigs)?;
        if !rel.is_empty() {
            files.retain(|f| f.path == rel || within(&f.path, rel));
            if files.is_empty() {
                return Err(not_tracked(path, name, rel));
            }
        }
        Ok(files)
    }

    fn read_file(&self, req: &Request, name: &str, rel: &str) -> Result<Output> {
        let (row, file) = {
            let store = self.store()?;
            let row = require(store.index(name)?, name)?;
            (row, store.file(name, rel)?)
        };
        let Some(f) = file else {
            if self.store()?.has_dir(name, rel)? {
                return Err(Error::new(
                    ErrorKind::IsADirectory,
                    format!(
                        "{} is a directory of index '{name}'; list it, or read {}:sigs for its signatures",
                        req.path, req.path
                    ),
                ));
            }
            return Err(not_tracked(&req.path, name, rel));
        };
        let text = self.render_file(&f);
        let data = json!({
            "index": name,
            "root": row.root,
            "path": f.path,
            "language": f.language,
            "size": f.size,
            "mtime": to_iso(f.mtime / 1000),
            "sha256": f.sha256,
            "signatures": f.signatures,
        });
        Ok(Output::new(text, data))
    }

    /// `## rel/path`, a blank line, then `- L12 pub fn foo()` per signature (nested by depth).
    fn render_file(&self, f: &FileRow) -> String {
        let mut s = format!("## {}\n\n", f.path);
        if f.signatures.is_empty() {
            let why = if !is_parsed(&f.language) {
                format!("{} files are tracked, not parsed", f.language)
            } else if f.size > self.max_file_bytes {
                format!(
                    "{} bytes is over max_file_bytes ({})",
                    f.size, self.max_file_bytes
                )
            } else {
                "none found".to_string()
            };
            s.push_str(&format!("(no signatures: {why})\n"));
            return s;
        }
        push_sigs(&mut s, f.signatures.iter(), false);
        s
    }

    /// A listing entry; its size is that of the rendered signatures, as a read returns them
    /// (the signatures are loaded here when `f` came without them).
    fn file_entry(&self, name: &str, f: &FileRow) -> Entry {
        let size = if f.sig_count > 0 && f.signatures.is_empty() {
            match self.store().and_then(|s| s.file(name, &f.path)) {
                Ok(Some(full)) => self.render_file(&full).len(),
                _ => self.render_file(f).len(),
            }
        } else {
            self.render_file(f).len()
        };
        Entry {
            path: avm_core::address::join(&self.index_path(name), &f.path),
            kind: NodeKind::File,
            size: size as u64,
            version: None,
            updated_at: Some(f.mtime / 1000),
        }
    }

    /// Adds the entries below `rel` (`""` = the index): immediate children, or every file
    /// when `recursive`.
    fn list_below(
        &self,
        entries: &mut Vec<Entry>,
        files: &[FileRow],
        row: &IndexRow,
        rel: &str,
        recursive: bool,
    ) {
        let index = self.index_path(&row.name);
        let base = if rel.is_empty() {
            index
        } else {
            avm_core::address::join(&index, rel)
        };
        let mut dirs: BTreeSet<&str> = BTreeSet::new();
        for f in files {
            let rest = if rel.is_empty() {
                Some(f.path.as_str())
            } else {
                f.path.strip_prefix(rel).and_then(|r| r.strip_prefix('/'))
            };
            let Some(rest) = rest else { continue };
            match rest.split_once('/') {
                Some((dir, _)) if !recursive => {
                    dirs.insert(dir);
                }
                _ => entries.push(self.file_entry(&row.name, f)),
            }
        }
        for d in dirs {
            entries.push(dir_entry(
                avm_core::address::join(&base, d),
                Some(row.scanned_at),
            ));
        }
    }

    fn read_sigs(&self, req: &Request, name: &str, rel: &str) -> Result<Output> {
        let lang = match req.query.get("lang") {
            Some(v) => Some(language_from_query(v).ok_or_else(|| {
                Error::invalid(format!(
                    "lang={v:?} is not accepted; use rs, py, ts, js or go"
                ))
            })?),
            None => None,
        };
        let q = req
            .query
            .get("q")
            .map(str::to_lowercase)
            .filter(|q| !q.is_empty());
        let files = self.files_below(name, rel, &req.path, true)?;
        let mut text = String::new();
        let mut data = Vec::new();
        for f in &files {
            if lang.is_some_and(|l| l != f.language) {
                continue;
            }
            let sigs: Vec<&Signature> = f
                .signatures
                .iter()
                .filter(|s| {
                    q.as_deref().is_none_or(|q| {
                        s.text.to_lowercase().contains(q) || s.name.to_lowercase().contains(q)
                    })
                })
                .collect();
            if sigs.is_empty() {
                continue;
            }
            if !text.is_empty() {
                text.push('\n');
            }
            text.push_str(&format!("## {}\n\n", f.path));
            // A filtered list loses the parents, so nesting would point at the wrong items.
            push_sigs(&mut text, sigs.iter().copied(), q.is_some());
            data.push(json!({"path": f.path, "language": f.language, "signatures": sigs}));
        }
        if text.is_empty() {
            text = if lang.is_some() || q.is_some() {
                "(no signatures match)\n".into()
            } else {
                "(no signatures extracted)\n".into()
            };
        }
        Ok(Output::new(text, Value::Array(data)))
    }

    fn read_files(&self, req: &Request, name: &str, rel: &str) -> Result<Output> {
        let files = self.files_below(name, rel, &req.path, false)?;
        let text: String = files.iter().map(|f| format!("{}\n", f.path)).collect();
        let data: Vec<Value> = files
            .iter()
            .map(|f| {
                json!({
                    "path": f.path,
                    "language": f.language,
                    "size": f.size,
                    "sha256": f.sha256,
                    "signatures": f.sig_count,
                })
            })
            .collect();
        Ok(Output::new(text, Value::Array(data)))
    }

    fn read_status(&self, req: &Request, name: &str, rel: &str) -> Result<Output> {
        if !rel.is_empty() {
            // Scoping to a path the index never saw is a typo more often than not.
            self.files_below(name, rel, &req.path, false)?;
        }
        let st = self.status_below(name, rel)?;
        let mut text = format!(
            "[{} clean, {} modified, {} missing, {} new]\n",
            st.clean,
            st.modified.len(),
            st.missing.len(),
            st.new.len()
        );
        if !st.root_exists {
            let root = self
                .store()?
                .index(name)?
                .map(|r| r.root)
                .unwrap_or_default();
            text.push_str(&format!(
                "The root {root} no longer exists; scan its new place with: echo DIR > {}:scan\n",
                self.index_path(name)
            ));
        }
        for p in &st.modified {
            text.push_str(&format!("M {p}\n"));
        }
        for p in &st.missing {
            text.push_str(&format!("D {p}\n"));
        }
        for p in &st.new {
            text.push_str(&format!("? {p}\n"));
        }
        if st.root_exists {
            for p in &st.unreadable {
                text.push_str(&format!("! {p}\n"));
            }
        }
        if st.modified.is_empty() && st.missing.is_empty() && st.new.is_empty() {
            text.push_str("All files clean.\n");
        }
        let data = json!({
            "name": name,
            "scope": rel,
            "root_exists": st.root_exists,
            "clean": st.clean,
            "modified": st.modified,
            "missing": st.missing,
            "new": st.new,
            "unreadable": st.unreadable,
        });
        Ok(Output::new(text, data))
    }

    fn rescan(&self, name: &str) -> Result<Output> {
        let root = require(self.store()?.index(name)?, name)?.root;
        let path = PathBuf::from(&root);
        if !path.is_dir() {
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!(
                    "the root {root} of index '{name}' no longer exists; scan its new place with: echo DIR > {}:scan",
                    self.index_path(name)
                ),
            ));
        }
        let report = self.scan(name, &path, &mut |_| {})?;
        Ok(Output::new(report.text(), report.to_json()))
    }

    fn read_suffix(&self, req: &Request, suffix: &str) -> Result<Output> {
        let keys: &[&str] = if suffix == "sigs" {
            &["lang", "q"]
        } else {
            &[]
        };
        req.query.check_keys(keys, &req.describe("read"))?;
        let (name, rel) = match self.target(&req.path)? {
            Target::Root => {
                return Err(Error::unsupported(
                    &format!(":{suffix}"),
                    &format!(
                        "{} (the list of indexes); read {}:{suffix}",
                        req.path,
                        self.index_path("NAME")
                    ),
                ));
            }
            Target::Index(name) => (name, String::new()),
            Target::Node(name, rel) => (name, rel),
        };
        match suffix {
            "sigs" => self.read_sigs(req, &name, &rel),
            "files" => self.read_files(req, &name, &rel),
            "status" => self.read_status(req, &name, &rel),
            _ if !rel.is_empty() => Err(on_index_only(req, suffix, &self.index_path(&name))),
            "json" => {
                let (row, files) = self.index_and_files(&name, false)?;
                let data = self.summary_json(&row, &files);
                let text = serde_json::to_string_pretty(&data)
                    .map_err(|e| Error::internal(format!("cannot encode JSON: {e}")))?;
                Ok(Output::new(text + "\n", data))
            }
            "scan" => {
                // A rescan reads the whole recorded tree with avm's rights: operators only.
                if req.caller != avm_core::Caller::Operator {
                    return Err(Error::new(
                        ErrorKind::PermissionDenied,
                        format!(
                            "only an operator may rescan {} (rule: index scans are operator-only)",
                            req.path
                        ),
                    ));
                }
                self.rescan(&name)
            }
            "describe" => {
                let row = require(self.store()?.index(&name)?, &name)?;
                let text = if row.description.is_empty() {
                    String::new()
                } else {
                    format!("{}\n", row.description)
                };
                Ok(Output::new(
                    text,
                    json!({"name": name, "description": row.description}),
                ))
            }
            other => Err(Error::unsupported(&format!(":{other}"), &req.path)),
        }
    }
}

/// The NotFound every missing index gives, with the command that creates one.
fn missing_index(name: &str) -> Error {
    Error::new(
        ErrorKind::NotFound,
        format!(
            "index '{name}' not found; create it with: avm index scan {} DIR",
            shell_word(name)
        ),
    )
}

fn require(row: Option<IndexRow>, name: &str) -> Result<IndexRow> {
    row.ok_or_else(|| missing_index(name))
}

fn not_tracked(path: &str, name: &str, rel: &str) -> Error {
    Error::new(
        ErrorKind::NotFound,
        format!(
            "no such node: {path} (index '{name}' tracks no file or directory '{rel}'; read its :files, or rescan with :scan)"
        ),
    )
}

fn on_index_only(req: &Request, suffix: &str, index: &str) -> Error {
    Error::new(
        ErrorKind::Unsupported,
        format!(
            "{}:{suffix} is not served on a file; use it on the index itself: {index}:{suffix}",
            req.path
        ),
    )
}

/// Quotes `s` for a POSIX shell when it is not a plain word.
fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-+@%".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Is `path` strictly below the directory `dir` (both relative)?
fn within(path: &str, dir: &str) -> bool {
    path.strip_prefix(dir).is_some_and(|r| r.starts_with('/'))
}

/// Index names are single path segments that the address grammar can carry.
fn validate_name(name: &str) -> Result<()> {
    let bad = name.is_empty()
        || name == "."
        || name == ".."
        || name.len() > avm_core::address::MAX_SEGMENT_BYTES
        || name
            .chars()
            .any(|c| c.is_control() || matches!(c, '/' | '\\' | ':' | '?'));
    if bad || name.trim() != name {
        return Err(Error::invalid(format!(
            "index name {name:?} is not accepted; use one path segment of up to 255 bytes without '/', '\\', ':', '?', control characters or surrounding spaces, e.g. my-project"
        )));
    }
    Ok(())
}

fn push_sigs<'a>(s: &mut String, sigs: impl Iterator<Item = &'a Signature>, flat: bool) {
    for sig in sigs {
        let depth = if flat { 0 } else { sig.depth as usize };
        s.push_str(&format!(
            "{}- L{} {}\n",
            "  ".repeat(depth.min(8)),
            sig.line,
            sig.text
        ));
    }
}

fn dir_stat(updated_at: Option<i64>, created_at: Option<i64>) -> Stat {
    Stat {
        kind: NodeKind::Dir,
        size: 0,
        version: None,
        created_at,
        updated_at,
        accessed_at: None,
        attrs: avm_core::Attrs::default(),
    }
}

fn dir_entry(path: String, updated_at: Option<i64>) -> Entry {
    Entry {
        path,
        kind: NodeKind::Dir,
        size: 0,
        version: None,
        updated_at,
    }
}

impl Provider for IndexProvider {
    fn info(&self) -> ProviderInfo {
        use SuffixOn::{Any, Dir};
        ProviderInfo {
            kind: "index".into(),
            description: "project trees: tracked files, change status and code signatures".into(),
            ops: Ops {
                read: true,
                list: true,
                write: true,
                remove: false,
                rename: false,
                search: false,
            },
            suffixes: vec![
                SuffixSpec::new(
                    "status",
                    Any,
                    true,
                    false,
                    &[],
                    "files modified (M), missing (D) or new (?) on disk since the last scan",
                ),
                SuffixSpec::new(
                    "sigs",
                    Any,
                    true,
                    false,
                    &["lang", "q"],
                    "signatures per file; lang=rs|py|ts|js|go, q= substring filter",
                ),
                SuffixSpec::new(
                    "files",
                    Any,
                    true,
                    false,
                    &[],
                    "tracked files, one per line",
                ),
                SuffixSpec::new("json", Dir, true, false, &[], "the index summary as JSON"),
                SuffixSpec::new(
                    "scan",
                    Dir,
                    true,
                    true,
                    &[],
                    "write an absolute directory to scan it into this index; read to rescan",
                ),
                SuffixSpec::new(
                    "describe",
                    Dir,
                    true,
                    true,
                    &[],
                    "the index's description; write to set it",
                ),
            ],
        }
    }

    fn read(&self, req: &Request) -> Result<Output> {
        if let Some(s) = &req.suffix {
            return self.read_suffix(req, s);
        }
        req.query.check_keys(&[], &req.describe("read"))?;
        match self.target(&req.path)? {
            Target::Root => self.list_indexes(),
            Target::Index(name) => self.summary(&name),
            Target::Node(name, rel) => self.read_file(req, &name, &rel),
        }
    }

    fn stat(&self, req: &Request) -> Result<Stat> {
        match self.target(&req.path)? {
            Target::Root => Ok(dir_stat(None, None)),
            Target::Index(name) => {
                let row = require(self.store()?.index(&name)?, &name)?;
                Ok(dir_stat(Some(row.scanned_at), Some(row.created_at)))
            }
            Target::Node(name, rel) => {
                let store = self.store()?;
                let row = require(store.index(&name)?, &name)?;
                if let Some(f) = store.file(&name, &rel)? {
                    drop(store);
                    return Ok(Stat {
                        kind: NodeKind::File,
                        size: self.render_file(&f).len() as u64,
                        version: None,
                        created_at: None,
                        updated_at: Some(f.mtime / 1000),
                        accessed_at: None,
                        attrs: avm_core::Attrs::default(),
                    });
                }
                if store.has_dir(&name, &rel)? {
                    return Ok(dir_stat(Some(row.scanned_at), None));
                }
                Err(not_tracked(&req.path, &name, &rel))
            }
        }
    }

    fn list(&self, req: &Request, opts: &ListOptions) -> Result<Listing> {
        let mut entries: Vec<Entry> = Vec::new();
        match self.target(&req.path)? {
            Target::Root => {
                let rows = self.store()?.indexes()?;
                for (row, _) in rows {
                    if opts.recursive {
                        let files = self.store()?.files(&row.name, false)?;
                        entries.extend(files.iter().map(|f| self.file_entry(&row.name, f)));
                    } else {
                        entries.push(dir_entry(self.index_path(&row.name), Some(row.scanned_at)));
                    }
                }
            }
            Target::Index(name) => {
                let (row, files) = self.index_and_files(&name, false)?;
                self.list_below(&mut entries, &files, &row, "", opts.recursive);
            }
            Target::Node(name, rel) => {
                let (row, files) = self.index_and_files(&name, false)?;
                if let Some(f) = files.iter().find(|f| f.path == rel) {
                    if !opts.recursive {
                        return Err(Error::new(
                            ErrorKind::NotADirectory,
                            format!("{} is a file, not a directory; read it", req.path),
                        ));
                    }
                    entries.push(self.file_entry(&name, f));
                } else {
                    if !files.iter().any(|f| within(&f.path, &rel)) {
                        return Err(not_tracked(&req.path, &name, &rel));
                    }
                    self.list_below(&mut entries, &files, &row, &rel, opts.recursive);
                }
            }
        }
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        let mut entries: Vec<Entry> = entries.into_iter().skip(opts.offset).collect();
        let more = opts.limit.is_some_and(|l| entries.len() > l);
        if let Some(l) = opts.limit {
            entries.truncate(l);
        }
        Ok(Listing { entries, more })
    }

    fn write(&self, req: &Request, input: WriteInput) -> Result<Output> {
        let refuse = || {
            Error::new(
                ErrorKind::ReadOnly,
                format!(
                    "{} is read-only: an index changes only through :scan and :describe (e.g. echo /abs/project > {}:scan)",
                    req.path,
                    self.index_path("NAME")
                ),
            )
        };
        let Some(suffix) = req.suffix.as_deref() else {
            return Err(refuse());
        };
        if suffix != "scan" && suffix != "describe" {
            return Err(refuse());
        }
        req.query.check_keys(&[], &req.describe("write"))?;
        // A scan reads whatever directory it is given with avm's own rights, so only an
        // operator (a person or script, not an agent) may point an index at a directory.
        if suffix == "scan" && req.caller != avm_core::Caller::Operator {
            return Err(Error::new(
                ErrorKind::PermissionDenied,
                format!(
                    "only an operator may scan a directory into {}; agents read indexes (rule: index scans are operator-only)",
                    req.path
                ),
            ));
        }
        let name = match self.target(&req.path)? {
            Target::Index(name) => name,
            Target::Root | Target::Node(..) => {
                return Err(Error::invalid(format!(
                    "{}:{suffix} names no index; write to {}:{suffix}",
                    req.path,
                    self.index_path("NAME")
                )));
            }
        };
        let body = input.into_text(&format!("what {}:{suffix} takes", req.path))?;
        let body = body.trim();
        if suffix == "describe" {
            validate_name(&name)?;
            if !self.store()?.describe(&name, body)? {
                return Err(missing_index(&name));
            }
            return self.summary(&name);
        }
        if body.is_empty() {
            return Err(Error::invalid(format!(
                "{}:scan needs the directory to scan, e.g. echo /home/me/project > {}:scan",
                req.path, req.path
            )));
        }
        // An absolute path is taken as given (the CLI sends canonical ones, and a directory
        // may have a `$` in its name); `~` and `${VAR}` are expanded otherwise.
        let dir = if body.starts_with('/') {
            PathBuf::from(body)
        } else {
            PathBuf::from(avm_core::config::expand(body)?)
        };
        let report = self.scan(&name, &dir, &mut |_| {})?;
        Ok(Output::new(report.text(), report.to_json()))
    }
}
