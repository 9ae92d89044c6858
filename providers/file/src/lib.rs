//! avm-provider-file: a host directory mapped onto a path, with no way out of it (config type
//! `file`).
//!
//! ```toml
//! [[mounts]]
//! pattern = "/files/**"
//! type = "file"
//! options = { root = "~/notes", read_only = false }
//! ```
//!
//! The path inside `root` is the `**` capture (for patterns ending in `**`), otherwise the
//! request path minus the mount's literal prefix. The provider builds host paths component by
//! component itself and does not rely on the host's normalisation: empty, `.`, `..` and
//! absolute components are refused, and every existing component is checked with
//! `symlink_metadata`. With `follow_symlinks = false` (the default) any symbolic link on the
//! way is refused; with `true` a link is followed only when its canonical target lies inside
//! the canonical root. Listings leave out links that could not be followed.
//!
//! Known limits: a hard link inside root to a file elsewhere cannot be told apart from a
//! normal file, and a host process racing to swap a checked directory for a symlink between
//! the check and the use is not defended against (agents cannot create links through avm).
//!
//! Files are UTF-8 text; reading a file that is not is an invalid-input error saying it is
//! binary. Writes are atomic (a temporary file in the same directory, then a rename) and keep
//! an existing file's permissions. Removal is immediate (there is no trash), so
//! `RemoveOptions::hard` changes nothing.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde_json::json;

use avm_core::address::{basename, join};
use avm_core::config::expand;
use avm_core::router::Pattern;
use avm_core::time::Micros;
use avm_core::{
    Entry, Error, ErrorKind, ListOptions, Listing, NodeKind, Ops, Output, Provider, ProviderInfo,
    RemoveOptions, Request, Result, Stat, WriteInput,
};

/// Options of a `file` mount.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileOptions {
    /// The host directory served (`~` and `${VAR}` expanded); must exist.
    pub root: String,
    /// Refuse every change. Default false.
    #[serde(default)]
    pub read_only: bool,
    /// Create missing parent directories on write, rename and mkdir. Default true.
    #[serde(default = "yes")]
    pub create_dirs: bool,
    /// Most bytes one write may carry. Default 8 MiB.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: usize,
    /// Most bytes a read returns; larger files are too-large. Default 64 MiB.
    #[serde(default = "default_max_read_bytes")]
    pub max_read_bytes: u64,
    /// Follow symbolic links whose target stays inside root. Default false: every symbolic
    /// link is refused.
    #[serde(default)]
    pub follow_symlinks: bool,
}

fn yes() -> bool {
    true
}

fn default_max_bytes() -> usize {
    8 * 1024 * 1024
}

fn default_max_read_bytes() -> u64 {
    64 * 1024 * 1024
}

/// A provider serving one host directory.
#[derive(Debug)]
pub struct FileProvider {
    pattern: Pattern,
    /// The mount's literal prefix (used for patterns without `**`).
    prefix: String,
    has_rest: bool,
    /// Canonical root.
    root: PathBuf,
    opts: FileOptions,
}

/// Tells temporary files of concurrent writes apart.
static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Marks temporary files so a crash's leftovers are recognisable.
const TMP_PREFIX: &str = ".avm-tmp.";

fn micros(t: io::Result<SystemTime>) -> Option<Micros> {
    let t = t.ok()?;
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_micros()).ok(),
        Err(e) => i64::try_from(e.duration().as_micros()).ok().map(|m| -m),
    }
}

/// Maps a host I/O error onto the error vocabulary, naming the virtual path (never the host
/// path, which is none of the caller's business).
fn io_err(e: &io::Error, vpath: &str, op: &str) -> Error {
    use io::ErrorKind as K;
    let kind = match e.kind() {
        K::NotFound => return Error::not_found(vpath),
        K::PermissionDenied => ErrorKind::PermissionDenied,
        K::AlreadyExists => ErrorKind::AlreadyExists,
        K::NotADirectory => ErrorKind::NotADirectory,
        K::IsADirectory => ErrorKind::IsADirectory,
        K::DirectoryNotEmpty => ErrorKind::NotEmpty,
        K::InvalidInput | K::InvalidFilename => ErrorKind::InvalidInput,
        K::ReadOnlyFilesystem => ErrorKind::ReadOnly,
        K::StorageFull | K::QuotaExceeded | K::FileTooLarge => ErrorKind::TooLarge,
        _ => ErrorKind::Unavailable,
    };
    Error::new(kind, format!("{op} of {vpath}: {e}"))
}

fn escape(vpath: &str, why: &str) -> Error {
    Error::denied(format!(
        "{vpath}: {why}; the file mount only serves paths inside its root"
    ))
}

impl FileProvider {
    /// Builds the provider for mount `pattern`; `root` must be an existing directory.
    pub fn new(pattern: &str, opts: FileOptions) -> Result<Self> {
        let parsed = Pattern::parse(pattern)?;
        let expanded = expand(&opts.root).map_err(|e| e.context("option root"))?;
        let root = fs::canonicalize(&expanded).map_err(|e| {
            Error::invalid(format!(
                "option root: {:?} cannot be used: {e}; give an existing directory",
                opts.root
            ))
        })?;
        if !root.is_dir() {
            return Err(Error::invalid(format!(
                "option root: {:?} is not a directory",
                opts.root
            )));
        }
        if opts.max_bytes == 0 {
            return Err(Error::invalid("option max_bytes must be at least 1"));
        }
        if opts.max_read_bytes == 0 {
            return Err(Error::invalid("option max_read_bytes must be at least 1"));
        }
        Ok(FileProvider {
            prefix: parsed.literal_prefix(),
            has_rest: pattern.split('/').any(|s| s == "**"),
            pattern: parsed,
            root,
            opts,
        })
    }

    /// The components of `vpath` below root. `captures` are the host's (may be empty).
    fn components(&self, vpath: &str, captures: &BTreeMap<String, String>) -> Result<Vec<String>> {
        let rel = if self.has_rest {
            let caps = if captures.is_empty() {
                self.pattern.matches(vpath)
            } else {
                Some(captures.clone())
            };
            caps.and_then(|c| c.get("**").cloned())
                .ok_or_else(|| Error::not_found(vpath))?
        } else {
            if self.pattern.matches(vpath).is_none() && vpath != self.prefix {
                return Err(Error::not_found(vpath));
            }
            let rest = if self.prefix == "/" {
                vpath
            } else {
                vpath.strip_prefix(self.prefix.as_str()).unwrap_or("")
            };
            rest.trim_start_matches('/').to_string()
        };
        split(&rel, vpath)
    }

    fn check_writable(&self, vpath: &str) -> Result<()> {
        if self.opts.read_only {
            return Err(Error::new(
                ErrorKind::ReadOnly,
                format!("{vpath} is on a read-only file mount"),
            ));
        }
        Ok(())
    }

    /// The host path for `comps`, following (or refusing) symlinks on the way. Components past
    /// the first missing one are appended unchecked: nothing exists there to lead anywhere.
    fn resolve(&self, comps: &[String], vpath: &str) -> Result<PathBuf> {
        let mut p = self.root.clone();
        for (i, c) in comps.iter().enumerate() {
            p.push(c);
            match fs::symlink_metadata(&p) {
                Ok(m) if m.file_type().is_symlink() => {
                    if !self.opts.follow_symlinks {
                        return Err(escape(
                            vpath,
                            "the path goes through a symbolic link, and follow_symlinks is off",
                        ));
                    }
                    let real = fs::canonicalize(&p).map_err(|_| {
                        escape(vpath, "a symbolic link on the path cannot be resolved")
                    })?;
                    if !real.starts_with(&self.root) {
                        return Err(escape(vpath, "a symbolic link on the path leads outside"));
                    }
                    p = real;
                }
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                    ) =>
                {
                    p.extend(&comps[i + 1..]);
                    return Ok(p);
                }
                Err(e) => return Err(io_err(&e, vpath, "lookup")),
            }
        }
        Ok(p)
    }

    /// The host path for `comps` without following the last component (for remove, rmdir
    /// and rename, which act on a link itself rather than on what it points to).
    fn resolve_entry(&self, comps: &[String], vpath: &str) -> Result<PathBuf> {
        let Some((last, parent)) = comps.split_last() else {
            return Ok(self.root.clone());
        };
        let mut p = self.resolve(parent, vpath)?;
        p.push(last);
        if !self.opts.follow_symlinks
            && fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_symlink())
        {
            return Err(escape(
                vpath,
                "it is a symbolic link, and follow_symlinks is off",
            ));
        }
        Ok(p)
    }

    fn entry_for(&self, path: &Path, vpath: String) -> Option<Entry> {
        let meta = self.usable_metadata(path)?;
        Some(Entry {
            path: vpath,
            kind: if meta.is_dir() {
                NodeKind::Dir
            } else {
                NodeKind::File
            },
            size: if meta.is_dir() { 0 } else { meta.len() },
            version: None,
            updated_at: micros(meta.modified()),
        })
    }

    /// Metadata of a listed path, or `None` for links that may not be followed.
    fn usable_metadata(&self, path: &Path) -> Option<fs::Metadata> {
        let meta = fs::symlink_metadata(path).ok()?;
        if !meta.file_type().is_symlink() {
            return Some(meta);
        }
        if !self.opts.follow_symlinks {
            return None;
        }
        let real = fs::canonicalize(path).ok()?;
        if !real.starts_with(&self.root) {
            return None;
        }
        fs::metadata(real).ok()
    }

    /// Children of a directory as `(name, host path)`, names that are not UTF-8 left out
    /// (they could not be addressed).
    fn children(&self, dir: &Path, vpath: &str) -> Result<Vec<(String, PathBuf)>> {
        let mut out = Vec::new();
        for e in fs::read_dir(dir).map_err(|e| io_err(&e, vpath, "list"))? {
            let e = e.map_err(|e| io_err(&e, vpath, "list"))?;
            if let Ok(name) = e.file_name().into_string() {
                out.push((name, e.path()));
            }
        }
        Ok(out)
    }

    /// Every file below `dir`, descending into directories (and, when following links, into
    /// linked directories inside root, each real directory once).
    fn walk(&self, dir: &Path, vdir: &str, out: &mut Vec<Entry>) -> Result<()> {
        let mut seen = std::collections::HashSet::new();
        let mut stack = vec![(dir.to_path_buf(), vdir.to_string())];
        while let Some((d, vd)) = stack.pop() {
            if let Ok(real) = fs::canonicalize(&d)
                && !seen.insert(real)
            {
                continue;
            }
            for (name, path) in self.children(&d, &vd)? {
                let vpath = join(&vd, &name);
                let Some(meta) = self.usable_metadata(&path) else {
                    continue;
                };
                if meta.is_dir() {
                    stack.push((path, vpath));
                } else if let Some(e) = self.entry_for(&path, vpath) {
                    out.push(e);
                }
            }
        }
        Ok(())
    }

    /// Writes `data` to `target` through a temporary file in the same directory.
    fn atomic_write(&self, target: &Path, data: &[u8], vpath: &str) -> Result<()> {
        let dir = target
            .parent()
            .ok_or_else(|| Error::internal(format!("{vpath} has no parent directory")))?;
        let tmp = dir.join(format!(
            "{TMP_PREFIX}{}.{}",
            std::process::id(),
            TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let written = (|| -> io::Result<()> {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)?;
            f.write_all(data)?;
            if let Ok(old) = fs::metadata(target) {
                f.set_permissions(old.permissions())?;
            }
            f.sync_all()?;
            fs::rename(&tmp, target)
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(io_err(&e, vpath, "write"));
        }
        Ok(())
    }

    fn ensure_parent(&self, target: &Path, vpath: &str) -> Result<()> {
        let Some(parent) = target.parent() else {
            return Ok(());
        };
        match fs::metadata(parent) {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => Err(Error::new(
                ErrorKind::NotADirectory,
                format!("the parent of {vpath} is a file, not a directory"),
            )),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if !self.opts.create_dirs {
                    return Err(Error::new(
                        ErrorKind::NotFound,
                        format!(
                            "the parent directory of {vpath} does not exist (create_dirs is off); mkdir it first"
                        ),
                    ));
                }
                fs::create_dir_all(parent).map_err(|e| io_err(&e, vpath, "mkdir -p"))
            }
            Err(e) => Err(io_err(&e, vpath, "lookup")),
        }
    }
}

/// Splits a relative path into components, refusing anything that could climb out.
fn split(rel: &str, vpath: &str) -> Result<Vec<String>> {
    if rel.is_empty() {
        return Ok(Vec::new());
    }
    if rel.starts_with('/') {
        return Err(escape(vpath, "an absolute path component was given"));
    }
    rel.split('/')
        .map(|c| match c {
            ".." => Err(escape(vpath, "a '..' component would climb out")),
            "" | "." => Err(Error::invalid(format!(
                "{vpath}: empty or '.' path components are not accepted"
            ))),
            c if c.contains('\0') => Err(Error::invalid(format!(
                "{vpath}: a path component contains a NUL byte"
            ))),
            c => Ok(c.to_string()),
        })
        .collect()
}

fn no_suffix(req: &Request) -> Result<()> {
    match &req.suffix {
        Some(s) => Err(Error::unsupported(&format!("suffix :{s}"), &req.path)),
        None => Ok(()),
    }
}

impl Provider for FileProvider {
    fn info(&self) -> ProviderInfo {
        let writable = !self.opts.read_only;
        ProviderInfo {
            kind: "file".into(),
            description: format!(
                "the host directory {}{}",
                self.root.display(),
                if writable { "" } else { " (read-only)" }
            ),
            ops: Ops {
                read: true,
                list: true,
                write: writable,
                remove: writable,
                rename: writable,
                search: false,
            },
            suffixes: Vec::new(),
        }
    }

    fn read(&self, req: &Request) -> Result<Output> {
        no_suffix(req)?;
        let comps = self.components(&req.path, &req.captures)?;
        let p = self.resolve(&comps, &req.path)?;
        let meta = fs::metadata(&p).map_err(|e| io_err(&e, &req.path, "read"))?;
        if meta.is_dir() {
            return Err(Error::new(
                ErrorKind::IsADirectory,
                format!("{} is a directory; list it instead", req.path),
            ));
        }
        if meta.len() > self.opts.max_read_bytes {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!(
                    "{} is {} bytes, more than max_read_bytes ({})",
                    req.path,
                    meta.len(),
                    self.opts.max_read_bytes
                ),
            ));
        }
        let bytes = fs::read(&p).map_err(|e| io_err(&e, &req.path, "read"))?;
        // Text as text; any other file byte for byte.
        let content = avm_core::Content::from_bytes(bytes);
        let data = match &content {
            avm_core::Content::Text(t) => json!(t),
            avm_core::Content::Bytes(b) => {
                json!({"path": req.path, "binary": true, "content_base64": avm_core::content::to_base64(b)})
            }
        };
        Ok(Output::content(content, move || data.clone()))
    }

    fn stat(&self, req: &Request) -> Result<Stat> {
        no_suffix(req)?;
        let comps = self.components(&req.path, &req.captures)?;
        let p = self.resolve(&comps, &req.path)?;
        let meta = fs::metadata(&p).map_err(|e| io_err(&e, &req.path, "stat"))?;
        let dir = meta.is_dir();
        Ok(Stat {
            kind: if dir { NodeKind::Dir } else { NodeKind::File },
            size: if dir { 0 } else { meta.len() },
            version: None,
            created_at: micros(meta.created()),
            updated_at: micros(meta.modified()),
            accessed_at: micros(meta.accessed()),
            attrs: avm_core::Attrs::default(),
        })
    }

    fn list(&self, req: &Request, opts: &ListOptions) -> Result<Listing> {
        no_suffix(req)?;
        let comps = self.components(&req.path, &req.captures)?;
        let p = self.resolve(&comps, &req.path)?;
        let meta = fs::metadata(&p).map_err(|e| io_err(&e, &req.path, "list"))?;
        if !meta.is_dir() {
            return Err(Error::new(
                ErrorKind::NotADirectory,
                format!("{} is a file, not a directory", req.path),
            ));
        }
        let mut entries = Vec::new();
        if opts.recursive {
            self.walk(&p, &req.path, &mut entries)?;
        } else {
            for (name, path) in self.children(&p, &req.path)? {
                if let Some(e) = self.entry_for(&path, join(&req.path, &name)) {
                    entries.push(e);
                }
            }
        }
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(Listing::page(entries, opts))
    }

    fn write(&self, req: &Request, input: WriteInput) -> Result<Output> {
        self.check_writable(&req.path)?;
        no_suffix(req)?;
        let what = req.describe("write");
        let (content, append, create_only) = match input {
            WriteInput::Text(t) => (avm_core::Content::from(t), false, false),
            WriteInput::Put(p) => {
                if p.meta.is_some()
                    || p.tags.is_some()
                    || p.importance.is_some()
                    || p.expires_at.is_some()
                {
                    return Err(Error::invalid(format!(
                        "{what}: the file mount stores content only (no metadata, tags, importance or expiry)"
                    )));
                }
                let Some(c) = p.content else {
                    return Err(Error::invalid(format!("{what}: no content given")));
                };
                (c, p.append, p.create_only)
            }
            WriteInput::Record(_) => {
                return Err(Error::invalid(format!(
                    "{what}: the file mount cannot import records; write plain content"
                )));
            }
        };
        if content.len() > self.opts.max_bytes {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!(
                    "{what}: {} bytes is more than max_bytes ({})",
                    content.len(),
                    self.opts.max_bytes
                ),
            ));
        }
        let comps = self.components(&req.path, &req.captures)?;
        if comps.is_empty() {
            return Err(Error::new(
                ErrorKind::IsADirectory,
                format!("{what}: the mount's root is a directory"),
            ));
        }
        let target = self.resolve(&comps, &req.path)?;
        let existing = match fs::metadata(&target) {
            Ok(m) if m.is_dir() => {
                return Err(Error::new(
                    ErrorKind::IsADirectory,
                    format!("{} is a directory; write to a file inside it", req.path),
                ));
            }
            Ok(_) => true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(io_err(&e, &req.path, "write")),
        };
        if existing && create_only {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("{} already exists", req.path),
            ));
        }
        self.ensure_parent(&target, &req.path)?;
        let data = if append && existing {
            let mut old = fs::read(&target).map_err(|e| io_err(&e, &req.path, "append"))?;
            old.extend_from_slice(content.as_bytes());
            old
        } else {
            content.as_bytes().to_vec()
        };
        self.atomic_write(&target, &data, &req.path)?;
        Ok(Output::new(
            format!("Saved: {} ({} bytes)", req.path, data.len()),
            json!({"path": req.path, "bytes": data.len()}),
        ))
    }

    fn remove(&self, req: &Request, opts: RemoveOptions) -> Result<Output> {
        self.check_writable(&req.path)?;
        no_suffix(req)?;
        let comps = self.components(&req.path, &req.captures)?;
        if comps.is_empty() {
            return Err(Error::denied(format!(
                "{}: the root of a file mount cannot be removed",
                req.path
            )));
        }
        let p = self.resolve_entry(&comps, &req.path)?;
        let meta = fs::symlink_metadata(&p).map_err(|e| io_err(&e, &req.path, "remove"))?;
        if meta.is_dir() {
            if !opts.recursive {
                return Err(Error::new(
                    ErrorKind::IsADirectory,
                    format!(
                        "{} is a directory; remove it recursively (rm -r) or use rmdir when empty",
                        req.path
                    ),
                ));
            }
            // remove_dir_all deletes links it meets without following them.
            fs::remove_dir_all(&p).map_err(|e| io_err(&e, &req.path, "remove"))?;
        } else {
            fs::remove_file(&p).map_err(|e| io_err(&e, &req.path, "remove"))?;
        }
        Ok(Output::new(
            format!("Deleted: {}", req.path),
            json!({"path": req.path}),
        ))
    }

    fn rename(&self, src: &Request, dst: &str, force: bool) -> Result<Output> {
        self.check_writable(&src.path)?;
        no_suffix(src)?;
        let src_comps = self.components(&src.path, &src.captures)?;
        if src_comps.is_empty() {
            return Err(Error::denied(format!(
                "{}: the root of a file mount cannot be moved",
                src.path
            )));
        }
        let from = self.resolve_entry(&src_comps, &src.path)?;
        fs::symlink_metadata(&from).map_err(|e| io_err(&e, &src.path, "rename"))?;
        // `dst` is on this mount, so our own pattern yields its components.
        let mut vdst = dst.to_string();
        let mut dst_comps = self.components(dst, &BTreeMap::new())?;
        let dst_host = self.resolve(&dst_comps, dst)?;
        if fs::metadata(&dst_host).is_ok_and(|m| m.is_dir()) && dst_host != from {
            // Moving onto a directory moves into it, keeping the name (as `mv` does).
            let name = basename(&src.path).to_string();
            vdst = join(dst, &name);
            dst_comps.push(name);
        }
        if dst_comps.is_empty() {
            return Err(Error::denied(format!(
                "{dst}: the root of a file mount cannot be replaced"
            )));
        }
        let to = self.resolve_entry(&dst_comps, &vdst)?;
        if fs::symlink_metadata(&to).is_ok() && !force {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("{vdst} already exists; use force to replace it"),
            ));
        }
        self.ensure_parent(&to, &vdst)?;
        fs::rename(&from, &to).map_err(|e| io_err(&e, &src.path, "rename"))?;
        Ok(Output::new(
            format!("Moved 1 node(s): {} → {vdst}", src.path),
            json!({"from": src.path, "to": vdst, "count": 1}),
        ))
    }

    fn mkdir(&self, req: &Request) -> Result<Output> {
        self.check_writable(&req.path)?;
        no_suffix(req)?;
        let comps = self.components(&req.path, &req.captures)?;
        let p = self.resolve(&comps, &req.path)?;
        if fs::symlink_metadata(&p).is_ok() {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("{} already exists", req.path),
            ));
        }
        let made = if self.opts.create_dirs {
            fs::create_dir_all(&p)
        } else {
            fs::create_dir(&p)
        };
        made.map_err(|e| io_err(&e, &req.path, "mkdir"))?;
        Ok(Output::new(
            format!("Created: {}/\n", req.path),
            json!({"path": req.path}),
        ))
    }

    fn rmdir(&self, req: &Request) -> Result<Output> {
        self.check_writable(&req.path)?;
        no_suffix(req)?;
        let comps = self.components(&req.path, &req.captures)?;
        if comps.is_empty() {
            return Err(Error::denied(format!(
                "{}: the root of a file mount cannot be removed",
                req.path
            )));
        }
        let p = self.resolve_entry(&comps, &req.path)?;
        let meta = fs::symlink_metadata(&p).map_err(|e| io_err(&e, &req.path, "rmdir"))?;
        if !meta.is_dir() {
            return Err(Error::new(
                ErrorKind::NotADirectory,
                format!("{} is not a directory", req.path),
            ));
        }
        fs::remove_dir(&p).map_err(|e| io_err(&e, &req.path, "rmdir"))?;
        Ok(Output::new(
            format!("Removed: {}/\n", req.path),
            json!({"path": req.path}),
        ))
    }
}
